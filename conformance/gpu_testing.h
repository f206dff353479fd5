// GPU cases: QH_REQUIRE_CUDA() at the top of a `Gpu*` test skips it with the reason when no CUDA device can be
// used. QH_DEVICE (set by `qharness run --device`) overrides: `cpu` skips GPU cases, `cuda` turns a missing device
// into a failure, so a GPU runner cannot pass by skipping.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#ifdef QH_WITH_CUDA
#include "kernels/kernels.h"
#endif

namespace qh::testing {

// Empty when CUDA can be used; else why not.
inline std::string cuda_unavailable() {
  const char* device = std::getenv("QH_DEVICE");
  if (device != nullptr && std::string(device) == "cpu") return "QH_DEVICE=cpu";
#ifdef QH_WITH_CUDA
  return qh::kernels::cuda_unavailable_reason();
#else
  return "built with QH_CUDA=OFF (no CUDA kernels)";
#endif
}

inline bool cuda_required() {
  const char* device = std::getenv("QH_DEVICE");
  return device != nullptr && std::string(device) == "cuda";
}

}  // namespace qh::testing

#define QH_REQUIRE_CUDA()                                                                      \
  do {                                                                                         \
    if (const std::string qh_reason_ = ::qh::testing::cuda_unavailable(); !qh_reason_.empty()) { \
      if (::qh::testing::cuda_required()) FAIL() << "QH_DEVICE=cuda but " << qh_reason_;        \
      GTEST_SKIP() << qh_reason_;                                                              \
    }                                                                                          \
  } while (0)
