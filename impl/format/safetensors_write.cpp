// The writer mirrors huggingface/safetensors `prepare` + `serialize`: tensors sorted by dtype descending then name,
// offsets contiguous from 0, compact JSON with __metadata__ first and entries in offset order, the header padded
// with spaces to a multiple of 8 bytes. Files from this writer are byte-identical to the reference's.
#include <algorithm>
#include <set>

#include <nlohmann/json.hpp>

#include "impl/core/atomic_file.h"
#include "impl/core/errors.h"
#include "impl/format/safetensors.h"

namespace qh::format {

namespace {

// Compact JSON string with the same escapes as serde_json (", \, control characters; UTF-8 kept as is).
std::string quoted(const std::string& s) { return nlohmann::json(s).dump(); }

std::uint64_t expected_bytes(const TensorData& t, const std::string& file) {
  std::uint64_t numel = 1;
  for (std::uint64_t d : t.shape) {
    if (__builtin_mul_overflow(numel, d, &numel)) {
      throw ShapeError(Where{.file = file, .tensor = t.name}, "element count overflows 64 bits", "a smaller shape",
                       std::to_string(t.shape.size()) + " dimensions");
    }
  }
  const std::uint64_t bits = numel * std::uint64_t(dtype_bits(t.dtype));
  if (bits % 8 != 0) {
    throw ShapeError(Where{.file = file, .tensor = t.name}, "numel x dtype bits must be a whole number of bytes",
                     "a multiple of 8 bits", std::to_string(bits) + " bits");
  }
  return bits / 8;
}

}  // namespace

std::string serialize_header(std::vector<TensorData>& tensors, const std::map<std::string, std::string>& metadata,
                             const std::string& file) {
  std::set<std::string> names;
  for (const TensorData& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__") {
      throw ConfigError(Where{.file = file, .tensor = t.name}, "tensor names must be non-empty and not '__metadata__'",
                        "another name", "'" + t.name + "'");
    }
    if (!names.insert(t.name).second) {
      throw ConfigError(Where{.file = file, .tensor = t.name}, "tensor names must be unique", "one tensor with this name",
                        "two or more");
    }
    const std::uint64_t want = expected_bytes(t, file);
    if (want != t.data.size()) {
      throw ShapeError(Where{.file = file, .tensor = t.name}, "data size must equal numel x dtype size",
                       std::to_string(want) + " bytes", std::to_string(t.data.size()) + " bytes");
    }
  }
  std::stable_sort(tensors.begin(), tensors.end(), [](const TensorData& a, const TensorData& b) {
    return a.dtype != b.dtype ? a.dtype > b.dtype : a.name < b.name;
  });
  std::string json = "{";
  bool first = true;
  if (!metadata.empty()) {
    json += "\"__metadata__\":{";
    for (const auto& [k, v] : metadata) {
      json += (first ? "" : ",") + quoted(k) + ":" + quoted(v);
      first = false;
    }
    json += "}";
    first = false;
  }
  std::uint64_t offset = 0;
  for (const TensorData& t : tensors) {
    json += (first ? "" : ",") + quoted(t.name) + ":{\"dtype\":\"" + std::string(dtype_name(t.dtype)) +
            "\",\"shape\":[";
    for (std::size_t i = 0; i < t.shape.size(); ++i) json += (i ? "," : "") + std::to_string(t.shape[i]);
    json += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + t.data.size()) + "]}";
    offset += t.data.size();
    first = false;
  }
  json += "}";
  json.append((8 - json.size() % 8) % 8, ' ');
  if (json.size() > kMaxHeaderBytes) {
    throw ShapeError(Where{.file = file}, "header length is limited to 100,000,000 bytes", "fewer tensors or shorter names",
                     std::to_string(json.size()) + " bytes");
  }
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[std::size_t(i)] = char((std::uint64_t(json.size()) >> (8 * i)) & 0xff);
  return out + json;
}

std::vector<std::byte> serialize(std::vector<TensorData> tensors, const std::map<std::string, std::string>& metadata) {
  const std::string header = serialize_header(tensors, metadata);
  std::vector<std::byte> out(reinterpret_cast<const std::byte*>(header.data()),
                             reinterpret_cast<const std::byte*>(header.data()) + header.size());
  for (const TensorData& t : tensors) out.insert(out.end(), t.data.begin(), t.data.end());
  return out;
}

void write_file(const std::string& path, std::vector<TensorData> tensors,
                const std::map<std::string, std::string>& metadata) {
  const std::string header = serialize_header(tensors, metadata, path);
  AtomicFile file(path);
  file.write(header);
  for (const TensorData& t : tensors) file.write(t.data.data(), t.data.size());
  file.commit();
}

}  // namespace qh::format
