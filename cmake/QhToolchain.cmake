# Compiler launcher, warnings and sanitizer flags shared by every target.
find_program(QH_CCACHE ccache)
if(QH_CCACHE)
  set(CMAKE_CXX_COMPILER_LAUNCHER ${QH_CCACHE})
  set(CMAKE_CUDA_COMPILER_LAUNCHER ${QH_CCACHE})
endif()

# Where{.file = ...} leaves the other fields empty on purpose: that warning would fire on every error we throw.
add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-Wall> $<$<COMPILE_LANGUAGE:CXX>:-Wextra>
                    $<$<COMPILE_LANGUAGE:CXX>:-Wno-missing-field-initializers>)

if(QH_SANITIZE)
  set(_qh_san -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_compile_options("$<$<COMPILE_LANGUAGE:CXX>:${_qh_san}>")
  add_link_options(${_qh_san})
endif()

if(QH_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "QH_FUZZ needs clang (libFuzzer): configure with the 'fuzz' preset")
  endif()
  # Undefined behaviour stops the run like a crash, so a fuzz run with no findings means none was hit.
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()
