// Helpers shared by the conformance suites: temporary directories, byte buffers, files.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace qh::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it when the object goes away.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

void write_bytes(const std::string& path, const std::vector<std::byte>& bytes);
std::vector<std::byte> read_bytes(const std::string& path);
std::string read_text(const std::string& path);

// A safetensors file made by hand: 8-byte little-endian length of `header`, `header`, then `data_bytes` bytes of
// a deterministic pattern. For building malformed files byte by byte.
std::vector<std::byte> safetensors_bytes(std::string_view header, std::size_t data_bytes);

// Deterministic pseudo-random bytes (splitmix64), different for every seed.
std::vector<std::byte> random_bytes(std::size_t n, std::uint64_t seed);

// The exception of type E that `f` throws, to inspect its message and Where; when `f` throws nothing, a test
// failure, and std::logic_error stops the test (another exception type propagates as it is).
template <class E>
E error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const E& e) {
    return e;
  }
  ADD_FAILURE() << "no error thrown";
  throw std::logic_error("no error thrown");
}

}  // namespace qh::testing
