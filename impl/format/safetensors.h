// safetensors, torch-free: parse and validate a header against the file it came from, read through a mapping,
// write in the reference implementation's byte layout. Format facts: FORMATS.md section 5 (huggingface/safetensors
// README.md and src/tensor.rs).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "impl/format/dtype.h"

namespace qh::format {

inline constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;  // reference MAX_HEADER_SIZE

struct TensorInfo {
  std::string name;
  Dtype dtype = Dtype::U8;
  std::vector<std::uint64_t> shape;
  std::uint64_t begin = 0;  // data_offsets, relative to the start of the data section; end exclusive
  std::uint64_t end = 0;

  std::uint64_t numel() const;  // 1 for shape [] (a scalar)
  std::uint64_t nbytes() const { return end - begin; }
};

struct Header {
  std::map<std::string, std::string> metadata;  // "__metadata__", string -> string
  std::vector<TensorInfo> tensors;              // in data_offsets order
  std::uint64_t data_start = 0;                 // 8 + header length: where data_offsets count from

  const TensorInfo* find(std::string_view name) const;  // nullptr when absent
};

// Parses and validates the header at the start of a safetensors file of `file_size` bytes; `prefix` holds at least
// the file's first min(file_size, 8 + header length) bytes. Checks, in the reference reader's order: header length
// (>= 8 bytes present, <= kMaxHeaderBytes, inside the file), UTF-8 JSON object, no duplicate keys, __metadata__ of
// strings, dtype names, shapes, data_offsets contiguous from 0 with no gap or overlap, byte sizes = numel x bits / 8
// without overflow, and data ending exactly at the end of the file. Throws FormatError naming `source`.
Header parse_header(std::span<const std::byte> prefix, std::uint64_t file_size, const std::string& source);

// A safetensors file opened through a private mapping of the whole file (O_RDONLY: the file itself is never
// modified). Mapped pages are copy-on-write, so a caller that writes through a view changes only its own copy.
class SafetensorsFile {
 public:
  // Opens, maps and validates `path`. Throws IoError (open/stat/mmap) or FormatError (contents).
  static std::shared_ptr<const SafetensorsFile> open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const Header& header() const { return header_; }
  std::uint64_t size() const { return size_; }

  // The tensor called `name`; throws FormatError(MissingTensor) naming the file and the tensor when absent.
  const TensorInfo& tensor(std::string_view name) const;
  // The tensor's bytes inside the mapping (writable copy-on-write pages; see above).
  std::span<std::byte> bytes(const TensorInfo& info) const;

 private:
  SafetensorsFile() = default;
  std::string path_;
  std::byte* base_ = nullptr;
  std::uint64_t size_ = 0;
  Header header_;
};

// One tensor to write: its bytes are numel x bits / 8 long, little-endian, row-major.
struct TensorData {
  std::string name;
  Dtype dtype = Dtype::U8;
  std::vector<std::uint64_t> shape;
  std::span<const std::byte> data;
};

// The header bytes (8-byte length + JSON padded with spaces to a multiple of 8) for `tensors`, in the reference
// writer's order: dtype descending (alignment order), then name; __metadata__ first, compact JSON. Reorders
// `tensors` into file order. Throws ShapeError for a byte size that does not match dtype and shape and ConfigError
// for an empty, reserved or duplicated name; `file` names the destination in those errors.
std::string serialize_header(std::vector<TensorData>& tensors, const std::map<std::string, std::string>& metadata,
                             const std::string& file = "");

// The whole file in memory (tests, small files).
std::vector<std::byte> serialize(std::vector<TensorData> tensors, const std::map<std::string, std::string>& metadata);

// Writes `path` atomically (temporary file + rename): the destination is the old file or the new complete one.
void write_file(const std::string& path, std::vector<TensorData> tensors,
                const std::map<std::string, std::string>& metadata);

}  // namespace qh::format
