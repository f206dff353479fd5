// What every fuzz target asserts beyond "no crash, no leak, no undefined behaviour, no timeout" (the sanitizers and
// libFuzzer catch those): a refusal is one of qharness's typed errors and its message names the input it refused,
// so a user can act on it. Any other exception escapes LLVMFuzzerTestOneInput and libFuzzer reports it as a crash.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

#include "impl/core/errors.h"

namespace qh::fuzz {

// Stops the run (a finding) with `what` when `ok` is false.
inline void require(bool ok, const std::string& what) {
  if (ok) return;
  std::fprintf(stderr, "qharness fuzz property violated: %s\n", what.c_str());
  std::abort();
}

// A refusal must say which file it refused: the error's message contains `source`.
inline void require_names(const Error& e, const std::string& source) {
  require(std::string(e.what()).find(source) != std::string::npos,
          "error message does not name '" + source + "': " + e.what());
}

}  // namespace qh::fuzz
