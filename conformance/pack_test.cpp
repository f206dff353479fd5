// GPTQ bit packing (impl/format/gptq_pack) against the layouts FORMATS.md 1.2, 1.3 and 1.5 spell out (AutoGPTQ's
// qlinear_cuda.py pack/forward): the nibble order, the 3-bit three-word layout with its two straddling fields,
// the v1 symmetric zero words (0x77777777 for 4 bits), and v1 <-> v2 conversion field by field. The 3-bit
// expectation is written here from the FORMATS.md word layout, independently of the bit-stream rule the code uses.
#include <gtest/gtest.h>

#include <array>
#include <random>

#include "impl/core/errors.h"
#include "impl/format/gptq_pack.h"

namespace qh::format {
namespace {

std::vector<std::uint8_t> random_codes(std::size_t count, int bits, unsigned seed, int low = 0) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> dist(low, (1 << bits) - 1);
  std::vector<std::uint8_t> out(count);
  for (auto& v : out) v = std::uint8_t(dist(rng));
  return out;
}

// FORMATS.md 1.3, literally: 32 three-bit values in three words.
std::array<std::uint32_t, 3> autogptq_3bit_words(const std::uint8_t* v) {
  std::array<std::uint32_t, 3> w{};
  for (int j = 0; j < 10; ++j) w[0] |= std::uint32_t(v[j]) << (3 * j);
  w[0] |= std::uint32_t(v[10] & 3) << 30;
  w[1] |= std::uint32_t((v[10] >> 2) & 1);
  for (int j = 0; j < 10; ++j) w[1] |= std::uint32_t(v[11 + j]) << (3 * j + 1);
  w[1] |= std::uint32_t(v[21] & 1) << 31;
  w[2] |= std::uint32_t((v[21] >> 1) & 3);
  for (int j = 0; j < 10; ++j) w[2] |= std::uint32_t(v[22 + j]) << (3 * j + 2);
  return w;
}

TEST(PackGptq, FourBitNibbleJOfRowRHoldsK8rPlusJ) {
  // Column 0 holds codes 1..8 for k = 0..7, column 1 a 15 at k = 0 only.
  std::vector<std::uint8_t> codes(8 * 2, 0);
  for (int k = 0; k < 8; ++k) codes[std::size_t(k * 2)] = std::uint8_t(k + 1);
  codes[1] = 15;
  const auto q = pack_qweight(codes, 8, 2, 4);
  ASSERT_EQ(q.size(), 2u);
  EXPECT_EQ(q[0], 0x87654321u);  // as int32 this word is negative: the bit pattern is what matters
  EXPECT_EQ(q[1], 0x0000000Fu);
}

TEST(PackGptq, SymmetricV1ZeroWords) {
  // FORMATS.md 1.5: sym zero = 2^(b-1), stored minus one: b=2 -> 0x55555555, b=4 -> 0x77777777 (2004318071),
  // b=8 -> 0x7F7F7F7F, b=3 -> stored 3 in every field.
  struct Case { int bits; std::uint32_t word; };
  for (const Case c : {Case{2, 0x55555555u}, Case{4, 0x77777777u}, Case{8, 0x7F7F7F7Fu}}) {
    const std::vector<std::uint8_t> stored(2 * 64, std::uint8_t((1 << (c.bits - 1)) - 1));
    for (std::uint32_t w : pack_qzeros(stored, 2, 64, c.bits)) EXPECT_EQ(w, c.word) << c.bits << " bits";
  }
  EXPECT_EQ(std::int32_t(0x77777777u), 2004318071);
  const std::vector<std::uint8_t> stored3(32, 3);
  const auto words = pack_qzeros(stored3, 1, 32, 3);
  const auto expected = autogptq_3bit_words(stored3.data());
  EXPECT_EQ(std::vector<std::uint32_t>(expected.begin(), expected.end()), words);
}

TEST(PackGptq, ThreeBitStraddlingFieldsMatchTheAutoGptqLayout) {
  // Fields 10 and 21 cross word boundaries; run them through all 8 values each.
  for (int v10 = 0; v10 < 8; ++v10) {
    for (int v21 = 0; v21 < 8; ++v21) {
      auto codes = random_codes(64, 3, unsigned(v10 * 8 + v21));
      codes[10] = std::uint8_t(v10);
      codes[21] = std::uint8_t(v21);
      codes[32 + 10] = std::uint8_t(7 - v10);
      // qzeros packs along N: the 64 values are one row of two 3-word triples.
      const auto words = pack_qzeros(codes, 1, 64, 3);
      const auto first = autogptq_3bit_words(codes.data()), second = autogptq_3bit_words(codes.data() + 32);
      ASSERT_EQ(words, (std::vector<std::uint32_t>{first[0], first[1], first[2], second[0], second[1], second[2]}))
          << "v10 " << v10 << ", v21 " << v21;
      EXPECT_EQ(unpack_qzeros(words, 1, 64, 3), codes);
    }
  }
}

TEST(PackGptq, ThreeBitQweightPacksAlongK) {
  // qweight packs along K: rows 3t..3t+2 of a column hold k = 32t..32t+31.
  const std::int64_t k = 64, n = 3;
  const auto codes = random_codes(std::size_t(k * n), 3, 5);
  const auto q = pack_qweight(codes, k, n, 3);
  for (std::int64_t col = 0; col < n; ++col) {
    for (std::int64_t t = 0; t < k / 32; ++t) {
      std::uint8_t column[32];
      for (int j = 0; j < 32; ++j) column[j] = codes[std::size_t((32 * t + j) * n + col)];
      const auto w = autogptq_3bit_words(column);
      for (int r = 0; r < 3; ++r) EXPECT_EQ(q[std::size_t((3 * t + r) * n + col)], w[std::size_t(r)]);
    }
  }
}

// FORMATS.md 1.2 literally, for b = 2, 4, 8: word r of a column holds values r * (32 / b) + j at bits b * j.
// values: `count` per stream; value i of stream s at values[s * vs + i * vi]; word w of stream s at out[s * ws + w * wi].
std::vector<std::uint32_t> formats_1_2_words(const std::vector<std::uint8_t>& values, std::int64_t streams,
                                             std::int64_t count, std::int64_t vs, std::int64_t vi, std::int64_t ws,
                                             std::int64_t wi, int bits) {
  const std::int64_t per_word = 32 / bits, words = count * bits / 32;
  std::vector<std::uint32_t> out(std::size_t(streams * words), 0);
  for (std::int64_t s = 0; s < streams; ++s) {
    for (std::int64_t r = 0; r < words; ++r) {
      for (std::int64_t j = 0; j < per_word; ++j) {
        out[std::size_t(s * ws + r * wi)] |= std::uint32_t(values[std::size_t(s * vs + (r * per_word + j) * vi)])
                                             << (bits * j);
      }
    }
  }
  return out;
}

// The unpack of FORMATS.md 1.2: value k of stream s is (word k * b / 32 >> (k * b) % 32) & (2^b - 1).
std::uint8_t formats_1_2_value(const std::vector<std::uint32_t>& words, std::int64_t s, std::int64_t k,
                               std::int64_t ws, std::int64_t wi, int bits) {
  const std::uint32_t word = words[std::size_t(s * ws + (k * bits / 32) * wi)];
  return std::uint8_t((word >> ((k * bits) % 32)) & ((1u << bits) - 1));
}

// K and N need only be multiples of 32 / b at 2, 4 and 8 bits (FORMATS.md 1.1: GPTQModel's K / pack_factor * b
// rows), not of 32: GPTQModel packs N = 2736 (= 16 mod 32) at 4 bits as 342 qzeros columns.
TEST(PackGptq, TwoFourEightBitsPackWholeWordsShorterThan32Values) {
  struct Case { int bits; std::int64_t k, n; };
  for (const Case c : {Case{4, 24, 40}, Case{2, 16, 48}, Case{8, 12, 20}, Case{4, 40, 8}}) {
    SCOPED_TRACE(std::to_string(c.bits) + " bits, K = " + std::to_string(c.k) + ", N = " + std::to_string(c.n));
    const std::int64_t groups = 3, rows = c.k * c.bits / 32, cols = c.n * c.bits / 32;
    ASSERT_EQ(packed_words(c.k, c.bits, "qweight"), rows);
    ASSERT_EQ(packed_words(c.n, c.bits, "qzeros"), cols);
    const auto codes = random_codes(std::size_t(c.k * c.n), c.bits, unsigned(c.k + c.n));  // (K, N)
    const auto q = pack_qweight(codes, c.k, c.n, c.bits);
    EXPECT_EQ(q, formats_1_2_words(codes, c.n, c.k, 1, c.n, 1, c.n, c.bits));  // streams: columns, down K
    EXPECT_EQ(unpack_qweight(q, c.k, c.n, c.bits), codes);
    for (std::int64_t k = 0; k < c.k; ++k) {
      for (std::int64_t n = 0; n < c.n; ++n) {
        ASSERT_EQ(formats_1_2_value(q, n, k, 1, c.n, c.bits), codes[std::size_t(k * c.n + n)]) << k << ", " << n;
      }
    }
    const auto zeros = random_codes(std::size_t(groups * c.n), c.bits, unsigned(c.n), /*low=*/1);  // (G, N)
    const auto z = pack_qzeros(zeros, groups, c.n, c.bits);
    EXPECT_EQ(z, formats_1_2_words(zeros, groups, c.n, c.n, 1, cols, 1, c.bits));  // streams: groups, along N
    EXPECT_EQ(unpack_qzeros(z, groups, c.n, c.bits), zeros);
    const auto v1 = qzeros_v2_to_v1(z, groups, c.n, c.bits, "qzeros");
    for (std::int64_t g = 0; g < groups; ++g) {
      for (std::int64_t n = 0; n < c.n; ++n) {
        ASSERT_EQ(formats_1_2_value(v1, g, n, cols, 1, c.bits), zeros[std::size_t(g * c.n + n)] - 1)
            << g << ", " << n;
      }
    }
    EXPECT_EQ(qzeros_v1_to_v2(v1, groups, c.n, c.bits, "qzeros"), z);
  }
}

TEST(PackGptq, PackMultiplePerWidth) {
  EXPECT_EQ(pack_multiple(2), 16);
  EXPECT_EQ(pack_multiple(3), 32);
  EXPECT_EQ(pack_multiple(4), 8);
  EXPECT_EQ(pack_multiple(8), 4);
  EXPECT_THROW(pack_multiple(5, "x.qweight"), ConfigError);
  EXPECT_EQ(packed_words(2736, 4, "qzeros"), 342);  // GPTQModel's qzeros columns for N = 2736
  EXPECT_EQ(packed_words(96, 3, "qweight"), 9);
  EXPECT_THROW(packed_words(24, 2, "qweight"), ShapeError);  // 24 % 16 != 0
  EXPECT_THROW(packed_words(10, 8, "qweight"), ShapeError);  // 10 % 4 != 0
}

TEST(PackGptq, RoundTripsForEveryWidth) {
  for (int bits : {2, 3, 4, 8}) {
    const std::int64_t k = 128, n = 96, groups = 4;
    const auto codes = random_codes(std::size_t(k * n), bits, unsigned(bits));
    EXPECT_EQ(unpack_qweight(pack_qweight(codes, k, n, bits), k, n, bits), codes) << bits;
    const auto zeros = random_codes(std::size_t(groups * n), bits, unsigned(bits + 10));
    EXPECT_EQ(unpack_qzeros(pack_qzeros(zeros, groups, n, bits), groups, n, bits), zeros) << bits;
  }
}

TEST(PackGptq, V1AndV2DifferByOnePerFieldIncludingStraddlingOnes) {
  // Asymmetric zeros in [1, maxq]: v2 stores z, v1 stores z - 1, for every field (3-bit fields 10 and 21 too),
  // where adding constants to whole words (GPTQModel v2.2.0) gets the straddling fields wrong.
  for (int bits : {2, 3, 4, 8}) {
    const std::int64_t groups = 3, n = 64;
    const auto zeros = random_codes(std::size_t(groups * n), bits, unsigned(bits + 20), /*low=*/1);
    const auto v2 = pack_qzeros(zeros, groups, n, bits);
    const auto v1 = qzeros_v2_to_v1(v2, groups, n, bits, "qzeros");
    const auto stored = unpack_qzeros(v1, groups, n, bits);
    for (std::size_t i = 0; i < zeros.size(); ++i) ASSERT_EQ(stored[i], zeros[i] - 1) << bits << " bits, field " << i;
    EXPECT_EQ(qzeros_v1_to_v2(v1, groups, n, bits, "qzeros"), v2) << bits;
  }
}

TEST(PackGptq, ZeroPointZeroCannotBeWrittenAsV1) {
  std::vector<std::uint8_t> zeros(64, 5);
  zeros[21] = 0;
  const auto v2 = pack_qzeros(zeros, 1, 64, 4);
  try {
    qzeros_v2_to_v1(v2, 1, 64, 4, "model.layers.0.mlp.up_proj.qzeros");
    FAIL() << "wrote a zero point of 0 as v1";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.where().tensor, "model.layers.0.mlp.up_proj.qzeros");
    EXPECT_NE(std::string(e.what()).find("gptq_v2"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("column 21"), std::string::npos) << e.what();
  }
}

TEST(PackGptq, V1MinusOneFieldIsRefused) {
  // What a v1 writer leaves for a zero point of 0: -1, all ones in the field.
  std::vector<std::uint8_t> stored(32, 3);
  stored[7] = 7;
  EXPECT_THROW(qzeros_v1_to_v2(pack_qzeros(stored, 1, 32, 3), 1, 32, 3, "qzeros"), FormatError);
}

TEST(PackGptq, BadShapesAndValuesAreTypedErrors) {
  EXPECT_THROW(pack_qweight(std::vector<std::uint8_t>(12 * 4), 12, 4, 4), ShapeError);  // K % 8 != 0
  EXPECT_THROW(pack_qweight(std::vector<std::uint8_t>(48 * 4), 48, 4, 3), ShapeError);  // K % 32 != 0 for 3 bits
  EXPECT_THROW(pack_qweight(std::vector<std::uint8_t>(8 * 4), 8, 4, 5), ConfigError);
  EXPECT_THROW(pack_qweight(std::vector<std::uint8_t>(8 * 3), 8, 4, 4), ShapeError);    // buffer too small
  std::vector<std::uint8_t> codes(8 * 4, 1);
  codes[5] = 16;
  try {
    pack_qweight(codes, 8, 4, 4);
    FAIL();
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("16 at index 5"), std::string::npos) << e.what();
  }
  try {
    packed_words(48, 3, "layers.0.qweight");
    FAIL();
  } catch (const ShapeError& e) {
    EXPECT_EQ(e.where().tensor, "layers.0.qweight");
    EXPECT_NE(std::string(e.what()).find("multiple of 32 values (32 values span 3 int32 words)"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace qh::format
