// safetensors parser, validator and writer (torch-free). Each malformed-file case names the defect it pins; the
// reference behaviour is huggingface/safetensors' reader (FORMATS.md section 5): files it rejects we reject with
// a typed error naming the file and tensor, files it writes we read, and our writer's bytes are its bytes.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <map>

#include <nlohmann/json.hpp>

#include "conformance/testing.h"
#include "impl/core/errors.h"
#include "impl/format/safetensors.h"

namespace qh::format {
namespace {

using Code = FormatError::Code;
using testing::safetensors_bytes;
using testing::TempDir;

// Writes `bytes` to a file, opens it, and expects a FormatError with `code` whose message contains every string
// of `parts` and names the file.
void expect_rejected(const std::vector<std::byte>& bytes, Code code, std::vector<std::string> parts) {
  TempDir dir;
  const std::string path = dir.file("bad.safetensors");
  testing::write_bytes(path, bytes);
  try {
    SafetensorsFile::open(path);
    FAIL() << "accepted a file that should fail with " << to_string(code);
  } catch (const FormatError& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_EQ(e.where().file, path);
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

// --- Header length -----------------------------------------------------------------------------------------------

TEST(SafetensorsHeader, EmptyFileIsHeaderTooSmall) {
  expect_rejected({}, Code::HeaderTooSmall, {"at least 8 bytes", "found 0 bytes"});
}

TEST(SafetensorsHeader, FiveBytesIsHeaderTooSmall) {
  expect_rejected(std::vector<std::byte>(5, std::byte{0}), Code::HeaderTooSmall, {"found 5 bytes"});
}

TEST(SafetensorsHeader, LengthAboveLimitIsHeaderTooLarge) {
  // 100,000,001 = 0x05F5E101, little-endian.
  std::vector<std::byte> bytes = {std::byte{0x01}, std::byte{0xE1}, std::byte{0xF5}, std::byte{0x05},
                                  std::byte{0},    std::byte{0},    std::byte{0},    std::byte{0}};
  expect_rejected(bytes, Code::HeaderTooLarge, {"100000001", "at most 100000000"});
}

TEST(SafetensorsHeader, LengthPastEndOfFileIsInvalidHeaderLength) {
  auto bytes = safetensors_bytes("{}", 0);
  bytes[0] = std::byte{64};  // claims 64 header bytes; the file has 2 after the length
  expect_rejected(bytes, Code::InvalidHeaderLength, {"8 + 64", "file size 10"});
}

// --- Header JSON -------------------------------------------------------------------------------------------------

TEST(SafetensorsHeader, TruncatedJsonIsInvalidHeader) {
  expect_rejected(safetensors_bytes(R"({"w":{"dtype":"F16","shape":[1],)", 0), Code::InvalidHeader,
                  {"header must be UTF-8 JSON", "parse error"});
}

TEST(SafetensorsHeader, NonUtf8IsInvalidHeader) {
  std::string header = R"({"__metadata__":{"k":"v?"}})";
  header[header.find('?')] = char(0xC3);  // a lead byte with no continuation
  expect_rejected(safetensors_bytes(header, 0), Code::InvalidHeader, {"UTF-8"});
}

TEST(SafetensorsHeader, TopLevelArrayIsInvalidHeader) {
  expect_rejected(safetensors_bytes("[1,2]   ", 0), Code::InvalidHeader, {"must be a JSON object", "array"});
}

TEST(SafetensorsHeader, MissingDataOffsetsIsInvalidHeader) {
  expect_rejected(safetensors_bytes(R"({"w":{"dtype":"U8","shape":[2]}})", 2), Code::InvalidHeader,
                  {"tensor 'w'", "\"data_offsets\""});
}

TEST(SafetensorsHeader, NegativeDimensionIsInvalidHeader) {
  expect_rejected(safetensors_bytes(R"({"w":{"dtype":"U8","shape":[-2],"data_offsets":[0,2]}})", 2),
                  Code::InvalidHeader, {"tensor 'w'", "non-negative", "-2"});
}

TEST(SafetensorsHeader, ThreeOffsetsIsInvalidHeader) {
  expect_rejected(safetensors_bytes(R"({"w":{"dtype":"U8","shape":[2],"data_offsets":[0,1,2]}})", 2),
                  Code::InvalidHeader, {"tensor 'w'", "[BEGIN, END]"});
}

TEST(SafetensorsHeader, UnknownDtypeIsInvalidDtype) {
  expect_rejected(safetensors_bytes(R"({"w":{"dtype":"F17","shape":[2],"data_offsets":[0,4]}})", 4),
                  Code::InvalidDtype, {"tensor 'w'", "\"F17\"", "F16", "F8_E8M0"});
}

TEST(SafetensorsHeader, DuplicateTensorNameIsRefused) {
  // The reference keeps the last entry and then trips over the byte range the first one covered; we name it.
  expect_rejected(safetensors_bytes(R"({"w":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                                    R"("w":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})",
                                    4),
                  Code::DuplicateTensor, {"tensor 'w'", "two or more"});
}

TEST(SafetensorsHeader, MetadataValueMustBeString) {
  expect_rejected(safetensors_bytes(R"({"__metadata__":{"format":1}})", 0), Code::InvalidMetadata,
                  {"'format'", "number"});
}

// --- Offsets and sizes -------------------------------------------------------------------------------------------

TEST(SafetensorsOffsets, GapBeforeFirstTensorIsInvalidOffset) {
  expect_rejected(safetensors_bytes(R"({"w":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}})", 6),
                  Code::InvalidOffset, {"tensor 'w'", "BEGIN = 0 (first tensor)", "data_offsets [4, 6]"});
}

TEST(SafetensorsOffsets, OverlapIsInvalidOffset) {
  expect_rejected(safetensors_bytes(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                                    R"("b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})",
                                    6),
                  Code::InvalidOffset, {"tensor 'b'", "BEGIN = 4 (end of tensor 'a')", "data_offsets [2, 6]"});
}

TEST(SafetensorsOffsets, ReversedRangeIsInvalidOffset) {
  expect_rejected(safetensors_bytes(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                                    R"("v":{"dtype":"U8","shape":[1],"data_offsets":[2,1]}})",
                                    2),
                  Code::InvalidOffset, {"tensor 'v'", "END >= BEGIN", "data_offsets [2, 1]"});
}

TEST(SafetensorsOffsets, ManyTensorsOnOneRangeAreInvalidOffset) {
  // The reference's test_json_attack: ten tensors all claiming bytes [0, 16].
  std::string header = "{";
  for (int i = 0; i < 10; ++i) {
    header += (i ? "," : "") + std::string("\"t") + std::to_string(i) +
              R"(":{"dtype":"F32","shape":[4],"data_offsets":[0,16]})";
  }
  header += "}";
  expect_rejected(safetensors_bytes(header, 16), Code::InvalidOffset, {"BEGIN = 16"});
}

TEST(SafetensorsOffsets, ElementCountOverflowIsValidationOverflow) {
  expect_rejected(
      safetensors_bytes(R"({"w":{"dtype":"U8","shape":[4294967296,4294967296,2],"data_offsets":[0,0]}})", 0),
      Code::ValidationOverflow, {"tensor 'w'", "shape [4294967296, 4294967296, 2]"});
}

TEST(SafetensorsOffsets, BitSizeOverflowIsValidationOverflow) {
  // 2^61 elements fit in 64 bits; x 16 bits does not.
  expect_rejected(safetensors_bytes(R"({"w":{"dtype":"F16","shape":[2305843009213693952],"data_offsets":[0,0]}})", 0),
                  Code::ValidationOverflow, {"tensor 'w'", "x 16 bits"});
}

TEST(SafetensorsOffsets, OddCountOfF4IsMisalignedSlice) {
  expect_rejected(safetensors_bytes(R"({"w":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}})", 2),
                  Code::MisalignedSlice, {"tensor 'w'", "3 x 4 = 12 bits (F4)"});
}

TEST(SafetensorsOffsets, WrongByteCountIsTensorInvalidInfo) {
  expect_rejected(safetensors_bytes(R"({"w":{"dtype":"F16","shape":[2,3],"data_offsets":[0,10]}})", 10),
                  Code::TensorInvalidInfo, {"tensor 'w'", "12 bytes for F16 shape [2, 3]", "10 bytes"});
}

TEST(SafetensorsOffsets, TrailingBytesAreMetadataIncompleteBuffer) {
  // A truncated or appended-to file: data must end exactly at the end of the file (no polyglot files).
  expect_rejected(safetensors_bytes(R"({"w":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})", 3),
                  Code::MetadataIncompleteBuffer, {"file size 8 + 53 + 2 = 63", "found file size 64"});
}

TEST(SafetensorsOffsets, TruncatedDataIsMetadataIncompleteBuffer) {
  expect_rejected(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 9),
                  Code::MetadataIncompleteBuffer, {"found file size"});
}

// --- Reading -----------------------------------------------------------------------------------------------------

TEST(SafetensorsRead, MissingFileIsIoError) {
  TempDir dir;
  try {
    SafetensorsFile::open(dir.file("absent.safetensors"));
    FAIL() << "opened a missing file";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("absent.safetensors"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("No such file"), std::string::npos) << e.what();
  }
}

TEST(SafetensorsRead, DirectoryIsIoError) {
  TempDir dir;
  EXPECT_THROW(SafetensorsFile::open(dir.path()), IoError);
}

TEST(SafetensorsRead, MissingTensorNamesFileAndTensor) {
  TempDir dir;
  testing::write_bytes(dir.file("a.safetensors"),
                       safetensors_bytes(R"({"w":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})", 2));
  const auto file = SafetensorsFile::open(dir.file("a.safetensors"));
  try {
    file->tensor("model.layers.0.bias");
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_EQ(e.code(), Code::MissingTensor);
    EXPECT_EQ(e.where().tensor, "model.layers.0.bias");
    EXPECT_EQ(e.where().file, dir.file("a.safetensors"));
  }
}

TEST(SafetensorsRead, WhitespaceAroundJsonIsAccepted) {
  // The reference reader runs serde_json, which skips JSON whitespace before and after the object.
  const auto bytes = safetensors_bytes(" \t\n{\"w\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]}}\r\n  ", 3);
  const Header h = parse_header(bytes, bytes.size(), "mem");
  ASSERT_EQ(h.tensors.size(), 1u);
  EXPECT_EQ(h.tensors[0].name, "w");
  EXPECT_EQ(h.data_start, bytes.size() - 3);
}

TEST(SafetensorsRead, ScalarAndZeroSizedTensors) {
  const auto bytes = safetensors_bytes(R"({"s":{"dtype":"F64","shape":[],"data_offsets":[0,8]},)"
                                       R"("z":{"dtype":"F32","shape":[0,5],"data_offsets":[8,8]},)"
                                       R"("y":{"dtype":"I32","shape":[5,0],"data_offsets":[8,8]}})",
                                       8);
  const Header h = parse_header(bytes, bytes.size(), "mem");
  ASSERT_EQ(h.tensors.size(), 3u);
  EXPECT_EQ(h.find("s")->numel(), 1u);
  EXPECT_EQ(h.find("z")->numel(), 0u);
  EXPECT_EQ(h.find("y")->nbytes(), 0u);
}

TEST(SafetensorsRead, SubByteDtypesAreReadableAsRawBytes) {
  // F4 / F6 have no ATen dtype, but their bytes must stay reachable: 6 x F4 = 3 bytes, 4 x F6 = 3 bytes.
  TempDir dir;
  const std::string path = dir.file("fp4.safetensors");
  testing::write_bytes(path, safetensors_bytes(R"({"a":{"dtype":"F4","shape":[2,3],"data_offsets":[0,3]},)"
                                               R"("b":{"dtype":"F6_E2M3","shape":[4],"data_offsets":[3,6]}})",
                                               6));
  const auto file = SafetensorsFile::open(path);
  const auto expected = testing::random_bytes(6, 7);
  const auto a = file->bytes(file->tensor("a"));
  const auto b = file->bytes(file->tensor("b"));
  ASSERT_EQ(a.size(), 3u);
  ASSERT_EQ(b.size(), 3u);
  EXPECT_TRUE(std::equal(a.begin(), a.end(), expected.begin()));
  EXPECT_TRUE(std::equal(b.begin(), b.end(), expected.begin() + 3));
}

// --- Writing -----------------------------------------------------------------------------------------------------

TEST(SafetensorsWrite, EmptyFileIsTheReferenceBytes) {
  // FORMATS.md section 5: an empty dict serializes as length 8, then "{}" and 6 spaces of padding.
  const auto bytes = serialize({}, {});
  std::vector<std::byte> expected = {std::byte{8}, std::byte{0}, std::byte{0}, std::byte{0},
                                     std::byte{0}, std::byte{0}, std::byte{0}, std::byte{0}};
  for (char c : std::string("{}      ")) expected.push_back(std::byte(c));
  EXPECT_EQ(bytes, expected);
}

TEST(SafetensorsWrite, OrderIsDtypeDescendingThenName) {
  const auto u8 = testing::random_bytes(3, 1), f32 = testing::random_bytes(8, 2), f16 = testing::random_bytes(4, 3);
  std::vector<TensorData> in = {{"b_u8", Dtype::U8, {3}, u8},
                                {"z_f16", Dtype::F16, {2}, f16},
                                {"a_f32", Dtype::F32, {2}, f32},
                                {"a_f16", Dtype::F16, {2}, f16}};
  const auto bytes = serialize(in, {{"format", "pt"}});
  const Header h = parse_header(bytes, bytes.size(), "mem");
  ASSERT_EQ(h.tensors.size(), 4u);
  EXPECT_EQ(h.tensors[0].name, "a_f32");
  EXPECT_EQ(h.tensors[1].name, "a_f16");
  EXPECT_EQ(h.tensors[2].name, "z_f16");
  EXPECT_EQ(h.tensors[3].name, "b_u8");
  EXPECT_EQ(h.data_start % 8, 0u);
  EXPECT_EQ(h.metadata.at("format"), "pt");
  const std::string text(reinterpret_cast<const char*>(bytes.data()) + 8, h.data_start - 8);
  EXPECT_EQ(text.rfind("{\"__metadata__\":{\"format\":\"pt\"},\"a_f32\":{\"dtype\":\"F32\",\"shape\":[2],"
                       "\"data_offsets\":[0,8]}", 0), 0u) << text;
}

TEST(SafetensorsWrite, EveryDtypeRoundTrips) {
  std::vector<std::vector<std::byte>> buffers;
  std::vector<TensorData> in;
  for (int i = 0; i < kDtypeCount; ++i) {
    const auto dtype = Dtype(i);
    // 8 elements x any bit width is a whole number of bytes.
    buffers.push_back(testing::random_bytes(std::size_t(dtype_bits(dtype)), std::uint64_t(i)));
    in.push_back({"t_" + std::string(dtype_name(dtype)), dtype, {2, 4}, buffers.back()});
  }
  TempDir dir;
  write_file(dir.file("all.safetensors"), in, {});
  const auto file = SafetensorsFile::open(dir.file("all.safetensors"));
  ASSERT_EQ(file->header().tensors.size(), std::size_t(kDtypeCount));
  for (int i = 0; i < kDtypeCount; ++i) {
    const auto& info = file->tensor("t_" + std::string(dtype_name(Dtype(i))));
    EXPECT_EQ(info.dtype, Dtype(i));
    EXPECT_EQ(info.shape, (std::vector<std::uint64_t>{2, 4}));
    const auto got = file->bytes(info);
    EXPECT_TRUE(std::equal(got.begin(), got.end(), buffers[std::size_t(i)].begin(), buffers[std::size_t(i)].end()))
        << dtype_name(Dtype(i));
  }
}

TEST(SafetensorsWrite, SizeMismatchIsRefusedAndOldFileKept) {
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  const auto good = testing::random_bytes(4, 1);
  write_file(path, {{"w", Dtype::F16, {2}, good}}, {});
  const auto before = testing::read_bytes(path);
  const auto short_data = testing::random_bytes(3, 2);
  try {
    write_file(path, {{"w", Dtype::F16, {2}, short_data}}, {});
    FAIL() << "wrote a tensor whose bytes do not match its shape";
  } catch (const ShapeError& e) {
    EXPECT_EQ(e.where().tensor, "w");
    EXPECT_EQ(e.where().file, path);
    EXPECT_NE(std::string(e.what()).find("expected 4 bytes, found 3 bytes"), std::string::npos) << e.what();
  }
  EXPECT_EQ(testing::read_bytes(path), before);
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 1) << "temporary file left behind";
}

TEST(SafetensorsWrite, DuplicateAndReservedNamesAreRefused) {
  const auto d = testing::random_bytes(1, 1);
  EXPECT_THROW(serialize({{"w", Dtype::U8, {1}, d}, {"w", Dtype::U8, {1}, d}}, {}), ConfigError);
  EXPECT_THROW(serialize({{"__metadata__", Dtype::U8, {1}, d}}, {}), ConfigError);
  EXPECT_THROW(serialize({{"", Dtype::U8, {1}, d}}, {}), ConfigError);
}

TEST(SafetensorsWrite, UnwritableDestinationIsIoError) {
  TempDir dir;
  EXPECT_THROW(write_file(dir.file("no/such/dir/x.safetensors"), {}, {}), IoError);
}

// --- Files written by the reference implementation (committed fixture) ------------------------------------------

TEST(SafetensorsReference, CommittedFixtureParsesAndReserializesByteForByte) {
  // fixtures/safetensors/reference_small.safetensors was written by Python safetensors (fixtures/gen_safetensors.py
  // says which version); re-serializing its tensors with our writer must give the same bytes.
  const std::string path = QH_SOURCE_DIR "/fixtures/safetensors/reference_small.safetensors";
  const auto file = SafetensorsFile::open(path);
  std::vector<TensorData> tensors;
  for (const TensorInfo& t : file->header().tensors) {
    const auto bytes = file->bytes(t);
    tensors.push_back({t.name, t.dtype, t.shape, {bytes.data(), bytes.size()}});
  }
  EXPECT_GE(tensors.size(), 5u);
  EXPECT_EQ(serialize(tensors, file->header().metadata), testing::read_bytes(path));
}

// --- Both directions against the installed reference package ----------------------------------------------------

// Runs fixtures/gen_safetensors.py with the configured Python (the project venv's) and returns its stdout.
std::string run_reference(const std::string& args) {
  const std::string command = std::string("'") + QH_PYTHON + "' '" QH_SOURCE_DIR "/fixtures/gen_safetensors.py' " + args;
  std::FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) throw std::runtime_error("cannot run " + command);
  std::string out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
  if (::pclose(pipe) != 0) throw std::runtime_error("failed: " + command + "\n" + out);
  return out;
}

std::string hex_of(std::span<const std::byte> bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (std::byte b : bytes) {
    out += digits[std::to_integer<int>(b) >> 4];
    out += digits[std::to_integer<int>(b) & 15];
  }
  return out;
}

// Checks that the reference package reads `path` exactly as our reader does: names, dtypes, shapes, bytes, metadata.
void expect_reference_reads_as_we_do(const std::string& path) {
  const auto described = nlohmann::json::parse(run_reference("describe '" + path + "'"));
  const auto file = SafetensorsFile::open(path);
  using Metadata = std::map<std::string, std::string>;
  EXPECT_EQ(described["metadata"].get<Metadata>(), file->header().metadata);
  ASSERT_EQ(described["tensors"].size(), file->header().tensors.size());
  for (const TensorInfo& t : file->header().tensors) {
    SCOPED_TRACE(t.name);
    ASSERT_TRUE(described["tensors"].contains(t.name));
    const auto& d = described["tensors"][t.name];
    EXPECT_EQ(d["dtype"].get<std::string>(), dtype_name(t.dtype));
    EXPECT_EQ(d["shape"].get<std::vector<std::uint64_t>>(), t.shape);
    EXPECT_EQ(d["hex"].get<std::string>(), hex_of(file->bytes(t)));
  }
}

TEST(SafetensorsReference, FileWrittenByPythonLoadsAndReserializesIdentically) {
  TempDir dir;
  const std::string path = dir.file("python.safetensors");
  run_reference("write '" + path + "'");
  expect_reference_reads_as_we_do(path);
  const auto file = SafetensorsFile::open(path);
  std::vector<TensorData> tensors;
  for (const TensorInfo& t : file->header().tensors) {
    const auto bytes = file->bytes(t);
    tensors.push_back({t.name, t.dtype, t.shape, {bytes.data(), bytes.size()}});
  }
  EXPECT_EQ(serialize(tensors, file->header().metadata), testing::read_bytes(path));
}

TEST(SafetensorsReference, FileWrittenByUsLoadsInPython) {
  // Every dtype torch's safetensors binding can load, odd sizes, a scalar, an empty tensor and metadata with
  // characters JSON must escape.
  const Dtype loadable[] = {Dtype::BOOL, Dtype::U8, Dtype::I8, Dtype::I16, Dtype::U16, Dtype::F16, Dtype::BF16,
                            Dtype::I32, Dtype::U32, Dtype::F32, Dtype::F64, Dtype::I64, Dtype::U64,
                            Dtype::F8_E4M3, Dtype::F8_E5M2};
  std::vector<std::vector<std::byte>> buffers;
  std::vector<TensorData> tensors;
  std::uint64_t seed = 1;
  for (Dtype d : loadable) {
    const std::size_t bytes = std::size_t(dtype_bits(d) / 8) * 15;
    buffers.push_back(testing::random_bytes(bytes, seed++));
    if (d == Dtype::BOOL) {
      for (auto& b : buffers.back()) b &= std::byte{1};  // torch.bool holds 0 or 1
    }
    tensors.push_back({"layer." + std::string(dtype_name(d)), d, {3, 5}, buffers.back()});
  }
  const auto scalar = testing::random_bytes(4, 99);
  tensors.push_back({"scalar", Dtype::F32, {}, scalar});
  tensors.push_back({"empty", Dtype::F16, {0, 7}, {}});
  TempDir dir;
  const std::string path = dir.file("ours.safetensors");
  write_file(path, tensors, {{"format", "pt"}, {"note", "quote \" tab \t \u00e9"}});
  expect_reference_reads_as_we_do(path);
}

}  // namespace
}  // namespace qh::format
