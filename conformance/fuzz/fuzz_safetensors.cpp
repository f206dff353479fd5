// libFuzzer target: the torch-free safetensors header parser and validator (impl/format/safetensors_parse.cpp) on
// arbitrary file bytes. Beyond fuzz_checks.h's properties: an accepted header describes tensors that tile the data
// section exactly, each of numel x dtype bits; and our writer, given what was accepted, writes a file that parses
// back to the same tensors, metadata and bytes (parse then serialize loses nothing).
#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "conformance/fuzz/fuzz_checks.h"
#include "impl/format/safetensors.h"

namespace {

using namespace qh;
using format::Header;
using format::TensorInfo;

const std::string kSource = "fuzz-input.safetensors";

void check_layout(const Header& h, std::uint64_t file_size) {
  std::uint64_t next = 0;
  for (const TensorInfo& t : h.tensors) {
    fuzz::require(t.begin == next && t.end >= t.begin, "tensor '" + t.name + "' does not continue the data section");
    fuzz::require(t.nbytes() * 8 == t.numel() * std::uint64_t(format::dtype_bits(t.dtype)),
                  "tensor '" + t.name + "' byte size differs from numel x bits / 8");
    next = t.end;
  }
  fuzz::require(h.data_start + next == file_size, "accepted data does not end at the end of the file");
}

// The writer refuses an empty tensor name (safetensors' reader accepts one); such headers skip the round trip.
bool writable(const Header& h) {
  for (const TensorInfo& t : h.tensors) {
    if (t.name.empty()) return false;
  }
  return true;
}

void check_round_trip(const Header& h, std::span<const std::byte> file) {
  std::vector<format::TensorData> tensors;
  for (const TensorInfo& t : h.tensors) {
    tensors.push_back({t.name, t.dtype, t.shape, file.subspan(h.data_start + t.begin, t.nbytes())});
  }
  const std::vector<std::byte> written = format::serialize(tensors, h.metadata);
  const Header back = format::parse_header(written, written.size(), "round-trip of " + kSource);
  fuzz::require(back.metadata == h.metadata, "metadata changed in the round trip");
  fuzz::require(back.tensors.size() == h.tensors.size(), "tensor count changed in the round trip");
  for (const TensorInfo& t : h.tensors) {
    const TensorInfo* b = back.find(t.name);
    fuzz::require(b != nullptr && b->dtype == t.dtype && b->shape == t.shape,
                  "tensor '" + t.name + "' changed dtype or shape in the round trip");
    const auto mine = file.subspan(h.data_start + t.begin, t.nbytes());
    const auto theirs = std::span<const std::byte>(written).subspan(back.data_start + b->begin, b->nbytes());
    fuzz::require(std::equal(mine.begin(), mine.end(), theirs.begin(), theirs.end()),
                  "tensor '" + t.name + "' bytes changed in the round trip");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> file(reinterpret_cast<const std::byte*>(data), size);
  Header h;
  try {
    h = format::parse_header(file, size, kSource);
  } catch (const FormatError& e) {
    fuzz::require_names(e, kSource);
    return 0;
  }
  check_layout(h, size);
  if (writable(h)) check_round_trip(h, file);
  return 0;
}
