#include "impl/format/gptq_pack.h"

#include "impl/core/errors.h"

namespace qh::format {

namespace {

void check_bits(int bits, const std::string& tensor) {
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8) {
    throw ConfigError(Where{.tensor = tensor}, "GPTQ packs 2, 3, 4 or 8 bits", "2, 3, 4 or 8", std::to_string(bits));
  }
}

void check_size(std::size_t have, std::int64_t want, const std::string& what) {
  if (std::int64_t(have) != want) {
    throw ShapeError(Where{.tensor = what}, "buffer size must match the shape", std::to_string(want) + " elements",
                     std::to_string(have) + " elements");
  }
}

// Value `i` of a packed stream of `bits`-bit values whose words are `words[w * stride]`.
template <class WordAt>
std::uint32_t read_field(WordAt word_at, std::int64_t i, int bits) {
  const std::int64_t bit = i * bits;
  const std::int64_t w = bit / 32;
  const int shift = int(bit % 32);
  std::uint64_t v = word_at(w) >> shift;
  if (shift + bits > 32) v |= std::uint64_t(word_at(w + 1)) << (32 - shift);
  return std::uint32_t(v & ((1u << bits) - 1));
}

template <class WordRef>
void write_field(WordRef word_ref, std::int64_t i, int bits, std::uint32_t value) {
  const std::int64_t bit = i * bits;
  const std::int64_t w = bit / 32;
  const int shift = int(bit % 32);
  word_ref(w) |= value << shift;
  if (shift + bits > 32) word_ref(w + 1) |= value >> (32 - shift);
}

void check_codes(std::span<const std::uint8_t> values, int bits, const std::string& tensor) {
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (values[i] >> bits) {
      throw ShapeError(Where{.tensor = tensor}, "a code does not fit in its bit width",
                       "values below " + std::to_string(1 << bits),
                       std::to_string(int(values[i])) + " at index " + std::to_string(i));
    }
  }
}

// Where the packed streams live: `streams` streams of `length` values; value i of stream s is
// values[s * value_stream + i * value_step], word w of stream s is words[s * word_stream + w * word_step].
// qweight: one stream per column (down K); qzeros: one stream per group (along N).
struct StreamLayout {
  std::int64_t streams, length, value_stream, value_step, word_stream, word_step;
};

StreamLayout qweight_layout(std::int64_t k, std::int64_t n) { return {n, k, 1, n, 1, n}; }
StreamLayout qzeros_layout(std::int64_t groups, std::int64_t n, std::int64_t cols) {
  return {groups, n, n, 1, cols, 1};
}

std::vector<std::uint32_t> pack_streams(std::span<const std::uint8_t> values, const StreamLayout& l, int bits,
                                        std::int64_t words) {
  std::vector<std::uint32_t> out(std::size_t(words), 0);
  for (std::int64_t s = 0; s < l.streams; ++s) {
    auto word = [&](std::int64_t w) -> std::uint32_t& { return out[std::size_t(s * l.word_stream + w * l.word_step)]; };
    for (std::int64_t i = 0; i < l.length; ++i) {
      write_field(word, i, bits, values[std::size_t(s * l.value_stream + i * l.value_step)]);
    }
  }
  return out;
}

std::vector<std::uint8_t> unpack_streams(std::span<const std::uint32_t> words, const StreamLayout& l, int bits) {
  std::vector<std::uint8_t> out(std::size_t(l.streams * l.length));
  for (std::int64_t s = 0; s < l.streams; ++s) {
    auto word = [&](std::int64_t w) { return words[std::size_t(s * l.word_stream + w * l.word_step)]; };
    for (std::int64_t i = 0; i < l.length; ++i) {
      out[std::size_t(s * l.value_stream + i * l.value_step)] = std::uint8_t(read_field(word, i, bits));
    }
  }
  return out;
}

}  // namespace

std::int64_t pack_multiple(int bits, const std::string& tensor) {
  check_bits(bits, tensor);
  return bits == 3 ? 32 : 32 / bits;
}

std::int64_t packed_words(std::int64_t count, int bits, const std::string& tensor) {
  const std::int64_t multiple = pack_multiple(bits, tensor);
  if (count <= 0 || count % multiple != 0) {
    const std::string words =
        bits == 3 ? "32 values span 3 int32 words" : std::to_string(multiple) + " values per int32";
    throw ShapeError(Where{.tensor = tensor},
                     std::to_string(bits) + "-bit packing needs a multiple of " + std::to_string(multiple) +
                         " values (" + words + ")",
                     "a positive multiple of " + std::to_string(multiple), std::to_string(count));
  }
  return count * bits / 32;
}

std::vector<std::uint32_t> pack_qweight(std::span<const std::uint8_t> codes, std::int64_t k, std::int64_t n,
                                        int bits) {
  const std::int64_t rows = packed_words(k, bits, "qweight");
  check_size(codes.size(), k * n, "codes");
  check_codes(codes, bits, "codes");
  return pack_streams(codes, qweight_layout(k, n), bits, rows * n);
}

std::vector<std::uint8_t> unpack_qweight(std::span<const std::uint32_t> qweight, std::int64_t k, std::int64_t n,
                                         int bits) {
  const std::int64_t rows = packed_words(k, bits, "qweight");
  check_size(qweight.size(), rows * n, "qweight");
  return unpack_streams(qweight, qweight_layout(k, n), bits);
}

std::vector<std::uint32_t> pack_qzeros(std::span<const std::uint8_t> zeros, std::int64_t groups, std::int64_t n,
                                       int bits) {
  const std::int64_t cols = packed_words(n, bits, "qzeros");
  check_size(zeros.size(), groups * n, "zeros");
  check_codes(zeros, bits, "zeros");
  return pack_streams(zeros, qzeros_layout(groups, n, cols), bits, groups * cols);
}

std::vector<std::uint8_t> unpack_qzeros(std::span<const std::uint32_t> qzeros, std::int64_t groups, std::int64_t n,
                                        int bits) {
  const std::int64_t cols = packed_words(n, bits, "qzeros");
  check_size(qzeros.size(), groups * cols, "qzeros");
  return unpack_streams(qzeros, qzeros_layout(groups, n, cols), bits);
}

std::vector<std::uint32_t> qzeros_v1_to_v2(std::span<const std::uint32_t> qzeros, std::int64_t groups,
                                           std::int64_t n, int bits, const std::string& tensor) {
  std::vector<std::uint8_t> zeros = unpack_qzeros(qzeros, groups, n, bits);
  const std::uint8_t all_ones = std::uint8_t((1 << bits) - 1);
  for (std::size_t i = 0; i < zeros.size(); ++i) {
    if (zeros[i] == all_ones) {
      throw FormatError(FormatError::Code::Other, Where{.tensor = tensor},
                        "a v1 (gptq) zero point stored as all ones is the -1 of a zero point 0, which v1 cannot hold "
                        "(the asymmetric v1 bug: the whole word is suspect)",
                        "stored values below " + std::to_string(all_ones),
                        std::to_string(all_ones) + " at group " + std::to_string(i / std::size_t(n)) + ", column " +
                            std::to_string(i % std::size_t(n)));
    }
    ++zeros[i];
  }
  return pack_qzeros(zeros, groups, n, bits);
}

std::vector<std::uint32_t> qzeros_v2_to_v1(std::span<const std::uint32_t> qzeros, std::int64_t groups,
                                           std::int64_t n, int bits, const std::string& tensor) {
  std::vector<std::uint8_t> zeros = unpack_qzeros(qzeros, groups, n, bits);
  for (std::size_t i = 0; i < zeros.size(); ++i) {
    if (zeros[i] == 0) {
      throw ConfigError(Where{.tensor = tensor},
                        "v1 (gptq) stores zero - 1 and cannot hold a zero point of 0; write --format gptq_v2",
                        "zero points >= 1", "0 at group " + std::to_string(i / std::size_t(n)) + ", column " +
                                                std::to_string(i % std::size_t(n)));
    }
    --zeros[i];
  }
  return pack_qzeros(zeros, groups, n, bits);
}

}  // namespace qh::format
