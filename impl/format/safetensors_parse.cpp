// Header parsing and validation; the checks follow huggingface/safetensors src/tensor.rs (read_metadata,
// Metadata::validate) in order, with one addition: duplicate JSON keys are refused by name (the reference
// deserializes into a map where the last one wins and usually fails later on offsets, with a less useful message).
#include <algorithm>
#include <cstring>
#include <set>
#include <vector>

#include <nlohmann/json.hpp>

#include "impl/core/errors.h"
#include "impl/core/shape_text.h"
#include "impl/format/safetensors.h"

namespace qh::format {

namespace {

using Code = FormatError::Code;
using nlohmann::json;

std::string offsets_text(const TensorInfo& t) {
  return "data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) + "]";
}

[[noreturn]] void fail(Code code, const std::string& file, const std::string& tensor, std::string rule,
                       std::string expected, std::string found) {
  throw FormatError(code, Where{.file = file, .tensor = tensor}, std::move(rule), std::move(expected),
                    std::move(found));
}

// The JSON type of `v` in words, for "found ..." messages.
std::string json_kind(const json& v) {
  std::string dumped = v.dump();
  if (dumped.size() > 40) dumped = dumped.substr(0, 37) + "...";
  return std::string(v.type_name()) + " " + dumped;
}

std::uint64_t read_u64_le(std::span<const std::byte> bytes) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | std::uint64_t(bytes[std::size_t(i)]);
  return v;
}

// Finds the first key that appears twice in one object, as a SAX pass. (nlohmann's parse callback would do it in
// the same pass, but its parser rescans the whole parent object at every object end: quadratic in the number of
// tensors, 2.5 s for a 16,384-tensor header; measured with perf/safetensors_bench.cpp.)
class DuplicateKeyFinder : public nlohmann::json_sax<json> {
 public:
  std::string duplicate;

  bool start_object(std::size_t) override {
    open_objects_.emplace_back();
    return true;
  }
  bool end_object() override {
    open_objects_.pop_back();
    return true;
  }
  bool key(string_t& k) override {
    if (!open_objects_.back().insert(k).second) duplicate = k;
    return duplicate.empty();  // stop at the first one
  }
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override { return false; }

 private:
  std::vector<std::set<std::string>> open_objects_;
};

// Parses the JSON text, refusing duplicate keys in any object.
json parse_json(std::string_view text, const std::string& source) {
  json doc;
  try {
    doc = json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    fail(Code::InvalidHeader, source, "", "header must be UTF-8 JSON", "a valid JSON object", e.what());
  }
  DuplicateKeyFinder finder;
  json::sax_parse(text.begin(), text.end(), &finder);
  if (!finder.duplicate.empty()) {
    fail(Code::DuplicateTensor, source, finder.duplicate, "each key may appear once in a header object",
         "one entry named '" + finder.duplicate + "'", "two or more");
  }
  return doc;
}

std::uint64_t unsigned_field(const json& v, const std::string& source, const std::string& tensor, const char* what) {
  if (!v.is_number_unsigned()) {
    fail(Code::InvalidHeader, source, tensor, std::string(what) + " must hold non-negative 64-bit integers",
         "an unsigned integer", json_kind(v));
  }
  return v.get<std::uint64_t>();
}

TensorInfo parse_tensor(const std::string& name, const json& entry, const std::string& source) {
  if (!entry.is_object()) {
    fail(Code::InvalidHeader, source, name, "a tensor entry must be an object",
         "{\"dtype\", \"shape\", \"data_offsets\"}", json_kind(entry));
  }
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!entry.contains(key)) {
      fail(Code::InvalidHeader, source, name, "a tensor entry needs dtype, shape and data_offsets",
           std::string("a \"") + key + "\" field", "none");
    }
  }
  TensorInfo t;
  t.name = name;
  const json& dtype = entry["dtype"];
  if (!dtype.is_string()) {
    fail(Code::InvalidDtype, source, name, "dtype must be a string", std::string(dtype_names_list()),
         json_kind(dtype));
  }
  const auto parsed = dtype_from_name(dtype.get<std::string>());
  if (!parsed) {
    fail(Code::InvalidDtype, source, name, "unknown dtype", "one of " + std::string(dtype_names_list()),
         "\"" + dtype.get<std::string>() + "\"");
  }
  t.dtype = *parsed;
  const json& shape = entry["shape"];
  if (!shape.is_array()) {
    fail(Code::InvalidHeader, source, name, "shape must be an array", "an array of sizes", json_kind(shape));
  }
  for (const json& d : shape) t.shape.push_back(unsigned_field(d, source, name, "shape"));
  const json& offsets = entry["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2) {
    fail(Code::InvalidHeader, source, name, "data_offsets must be [BEGIN, END]", "an array of 2 integers",
         json_kind(offsets));
  }
  t.begin = unsigned_field(offsets[0], source, name, "data_offsets");
  t.end = unsigned_field(offsets[1], source, name, "data_offsets");
  return t;
}

// Metadata::validate: offsets contiguous from 0 in sorted order, sizes consistent; returns the data length.
std::uint64_t validate_offsets(std::vector<TensorInfo>& tensors, const std::string& source) {
  std::sort(tensors.begin(), tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  std::uint64_t position = 0;
  std::string previous;
  for (const TensorInfo& t : tensors) {
    if (t.begin != position || t.end < t.begin) {
      const std::string where = previous.empty() ? "0 (first tensor)" : std::to_string(position) +
                                                                             " (end of tensor '" + previous + "')";
      fail(Code::InvalidOffset, source, t.name,
           "data_offsets must tile the data section: each tensor starts where the previous ends, END >= BEGIN",
           "BEGIN = " + where, offsets_text(t));
    }
    position = t.end;
    previous = t.name;
    std::uint64_t numel = 1;
    for (std::uint64_t d : t.shape) {
      if (__builtin_mul_overflow(numel, d, &numel)) {
        fail(Code::ValidationOverflow, source, t.name, "element count overflows 64 bits",
             "a product of dimensions below 2^64", "shape " + shape_text(t.shape));
      }
    }
    std::uint64_t nbits = 0;
    const auto bits = std::uint64_t(dtype_bits(t.dtype));
    if (__builtin_mul_overflow(numel, bits, &nbits)) {
      fail(Code::ValidationOverflow, source, t.name, "bit size overflows 64 bits", "numel x bits below 2^64",
           std::to_string(numel) + " elements x " + std::to_string(bits) + " bits");
    }
    if (nbits % 8 != 0) {
      fail(Code::MisalignedSlice, source, t.name, "numel x dtype bits must be a whole number of bytes",
           "a multiple of 8 bits", std::to_string(numel) + " x " + std::to_string(bits) + " = " +
                                       std::to_string(nbits) + " bits (" + std::string(dtype_name(t.dtype)) + ")");
    }
    if (t.end - t.begin != nbits / 8) {
      fail(Code::TensorInvalidInfo, source, t.name, "byte range must equal numel x dtype size",
           std::to_string(nbits / 8) + " bytes for " + std::string(dtype_name(t.dtype)) + " shape " +
               shape_text(t.shape),
           std::to_string(t.end - t.begin) + " bytes in " + offsets_text(t));
    }
  }
  return position;
}

}  // namespace

std::uint64_t TensorInfo::numel() const {
  std::uint64_t n = 1;
  for (std::uint64_t d : shape) n *= d;  // cannot overflow: validated by parse_header
  return n;
}

const TensorInfo* Header::find(std::string_view name) const {
  for (const TensorInfo& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

Header parse_header(std::span<const std::byte> prefix, std::uint64_t file_size, const std::string& source) {
  if (file_size < 8 || prefix.size() < 8) {
    fail(Code::HeaderTooSmall, source, "", "a safetensors file starts with an 8-byte little-endian header length",
         "at least 8 bytes", std::to_string(file_size) + " bytes");
  }
  const std::uint64_t n = read_u64_le(prefix.first(8));
  if (n > kMaxHeaderBytes) {
    fail(Code::HeaderTooLarge, source, "", "header length is limited to 100,000,000 bytes",
         "at most " + std::to_string(kMaxHeaderBytes), std::to_string(n));
  }
  if (8 + n > file_size || 8 + n > prefix.size()) {
    fail(Code::InvalidHeaderLength, source, "", "the header must fit inside the file",
         "8 + header length <= file size " + std::to_string(file_size), "8 + " + std::to_string(n));
  }
  const auto text = prefix.subspan(8, n);
  const json doc = parse_json(std::string_view(reinterpret_cast<const char*>(text.data()), text.size()), source);
  if (!doc.is_object()) {
    fail(Code::InvalidHeader, source, "", "the header must be a JSON object", "an object", json_kind(doc));
  }
  Header header;
  header.data_start = 8 + n;
  for (const auto& [key, value] : doc.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) {
        fail(Code::InvalidMetadata, source, "__metadata__", "__metadata__ must map strings to strings",
             "an object", json_kind(value));
      }
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string()) {
          fail(Code::InvalidMetadata, source, "__metadata__", "__metadata__ values must be strings",
               "a string for key '" + mk + "'", json_kind(mv));
        }
        header.metadata[mk] = mv.get<std::string>();
      }
      continue;
    }
    header.tensors.push_back(parse_tensor(key, value, source));
  }
  const std::uint64_t data_len = validate_offsets(header.tensors, source);
  if (header.data_start + data_len != file_size) {
    fail(Code::MetadataIncompleteBuffer, source, "", "tensor data must end exactly at the end of the file",
         "file size 8 + " + std::to_string(n) + " + " + std::to_string(data_len) + " = " +
             std::to_string(header.data_start + data_len),
         "file size " + std::to_string(file_size));
  }
  return header;
}

}  // namespace qh::format
