# Decides QH_WITH_CUDA from QH_CUDA and enables the CUDA language. CMAKE_CUDA_ARCHITECTURES alone picks the targets:
# CI compiles 80;90a (the Ampere mma.sync path and the Hopper path), releases 80;86;89;90a, the device preset 90a.
set(QH_WITH_CUDA OFF)
if(NOT QH_CUDA STREQUAL "OFF" AND NOT QH_FUZZ)
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES "80;90a" CACHE STRING "CUDA architectures")
    endif()
    # Shared cudart: one CUDA runtime in the process, the same one LibTorch uses.
    set(CMAKE_CUDA_RUNTIME_LIBRARY Shared)
    enable_language(CUDA)
    # CMake 3.25 knows no C++20 flag for nvcc, and a CUDA target without CUDA_STANDARD inherits CXX_STANDARD (20):
    # kernels/ is C++17 (cmake/QhTorch.cmake sets it again after LibTorch overrides it).
    set(CMAKE_CUDA_STANDARD 17)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    find_package(CUDAToolkit REQUIRED)
    set(QH_WITH_CUDA ON)
  elseif(QH_CUDA STREQUAL "ON")
    message(FATAL_ERROR "QH_CUDA=ON but no CUDA compiler was found (put nvcc on PATH or set CMAKE_CUDA_COMPILER)")
  endif()
endif()
message(STATUS "qharness: CUDA kernels ${QH_WITH_CUDA} (architectures: ${CMAKE_CUDA_ARCHITECTURES})")
