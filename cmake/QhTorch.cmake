# LibTorch from the torch wheel of QH_PYTHON (default: the python3 on PATH, which ci/ scripts point at the
# project's venv). The wheel is a CUDA 13 build: configuring against it needs the CUDA toolkit (nvcc 13) present.
set(QH_PYTHON "" CACHE FILEPATH "Python interpreter whose torch wheel provides LibTorch")
if(NOT QH_PYTHON)
  find_program(QH_PYTHON_FOUND NAMES python3 python REQUIRED)
  set(QH_PYTHON ${QH_PYTHON_FOUND} CACHE FILEPATH "Python interpreter whose torch wheel provides LibTorch" FORCE)
endif()
execute_process(
  COMMAND ${QH_PYTHON} -c "import torch; print(torch.utils.cmake_prefix_path)"
  OUTPUT_VARIABLE QH_TORCH_PREFIX OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _qh_torch_rc)
if(NOT _qh_torch_rc EQUAL 0)
  message(FATAL_ERROR "${QH_PYTHON} cannot import torch: run ci/bootstrap.sh, put its venv's python3 on PATH "
                      "or pass -DQH_PYTHON=/path/to/python")
endif()
list(APPEND CMAKE_PREFIX_PATH ${QH_TORCH_PREFIX})

# Torch's cuda.cmake appends its own -gencode flags to CMAKE_CUDA_FLAGS and turns CMAKE_CUDA_ARCHITECTURES off;
# restore both so that CMAKE_CUDA_ARCHITECTURES alone decides. It also sets CMAKE_CUDA_STANDARD to the C++ one
# (20), for which CMake 3.25 has no nvcc flag: restore ours (17, cmake/QhCuda.cmake). A fixed TORCH_CUDA_ARCH_LIST stops it probing for a
# GPU at configure time (the flags it derives are discarded).
set(_qh_cuda_flags "${CMAKE_CUDA_FLAGS}")
set(_qh_cuda_archs "${CMAKE_CUDA_ARCHITECTURES}")
set(_qh_cuda_std "${CMAKE_CUDA_STANDARD}")
set(TORCH_CUDA_ARCH_LIST "8.0")
find_package(Torch REQUIRED)
set(CMAKE_CUDA_FLAGS "${_qh_cuda_flags}")
set(CMAKE_CUDA_ARCHITECTURES "${_qh_cuda_archs}")
set(CMAKE_CUDA_STANDARD "${_qh_cuda_std}")
message(STATUS "qharness: LibTorch ${Torch_VERSION} from ${QH_TORCH_PREFIX}; CUDA flags restored to "
               "'${CMAKE_CUDA_FLAGS}', architectures ${CMAKE_CUDA_ARCHITECTURES}")

# qh_torch: what our LibTorch-based targets link. libtorch.so exports its own copies of the std::filesystem
# operations (remove_all, create_directories, ...), and the one we reached, remove_all, jumps to address 0. Naming
# libstdc++ before LibTorch puts it first in the executable's DT_NEEDED list, so the dynamic linker binds those
# symbols to libstdc++'s definitions (conformance/safetensors_tensors_test.cpp's TempDir exercises it).
add_library(qh_torch INTERFACE)
target_link_libraries(qh_torch INTERFACE "-Wl,--push-state,--no-as-needed,-lstdc++,--pop-state" ${TORCH_LIBRARIES})
