// config.json (impl/format/model_config): the keys the synthetic architectures read, and bad input named by file
// and key. The tie alias cases live in skip_module_loading_test.
#include <gtest/gtest.h>

#include "conformance/testing.h"
#include "impl/core/errors.h"
#include "impl/format/model_config.h"

namespace qh::format {
namespace {

template <class E>
std::string error_of(const std::string& json) {
  try {
    parse_model_config(json, "ckpt/config.json");
  } catch (const E& e) {
    EXPECT_EQ(e.where().file, "ckpt/config.json");
    return e.what();
  }
  ADD_FAILURE() << "accepted: " << json;
  return "";
}

const std::string kSizes = R"("vocab_size": 8, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1)";

// What we write reads back the same (both architectures, StripedHyena's own key names included).
TEST(ModelConfig, WrittenConfigReadsBack) {
  ModelConfig hyena;
  hyena.model_type = "stripedhyena";
  hyena.vocab_size = 16;
  hyena.hidden_size = 32;
  hyena.intermediate_size = 64;
  hyena.num_layers = 2;
  hyena.state_size = 4;
  hyena.tied = true;
  hyena.tie_key = "tie_embeddings";
  hyena.dtype = "bfloat16";
  const ModelConfig back = parse_model_config(model_config_json(hyena), "config.json");
  EXPECT_EQ(back.model_type, "stripedhyena");
  EXPECT_EQ(back.intermediate_size, 64);
  EXPECT_EQ(back.num_layers, 2);
  EXPECT_EQ(back.state_size, 4);
  EXPECT_TRUE(back.tied);
  EXPECT_EQ(back.tie_key, "tie_embeddings");
  EXPECT_EQ(back.dtype, "bfloat16");
}

// Each defect names the key and what was expected.
TEST(ModelConfig, BadInputNamesTheKey) {
  EXPECT_NE(error_of<FormatError>("{not json").find("valid JSON"), std::string::npos);
  EXPECT_NE(error_of<FormatError>("[1, 2]").find("JSON object"), std::string::npos);
  EXPECT_NE(error_of<ConfigError>("{" + kSizes + "}").find("model_type"), std::string::npos);
  EXPECT_NE(error_of<ConfigError>(R"({"model_type": "qwen2", )" + kSizes + "}").find("qwen2"), std::string::npos);
  EXPECT_NE(error_of<ConfigError>(R"({"model_type": "llama", "vocab_size": 8})").find("hidden_size"),
            std::string::npos);
  EXPECT_NE(error_of<ConfigError>(R"({"model_type": "llama", "vocab_size": -8, "hidden_size": 32,
      "intermediate_size": 64, "num_hidden_layers": 1})").find("'vocab_size' must be a positive integer"),
            std::string::npos);
  EXPECT_NE(error_of<ConfigError>(R"({"model_type": "llama", "attention_bias": "yes", )" + kSizes + "}")
                .find("'attention_bias' must be a boolean"),
            std::string::npos);
  EXPECT_NE(error_of<ConfigError>(R"({"model_type": "llama", "torch_dtype": "int8", )" + kSizes + "}").find("int8"),
            std::string::npos);
}

TEST(ModelConfig, MissingFileIsAnIoErrorNamingIt) {
  testing::TempDir dir;
  try {
    read_model_config(dir.file("config.json"));
    FAIL() << "a missing config.json was read";
  } catch (const IoError& e) {
    EXPECT_EQ(e.where().file, dir.file("config.json"));
    EXPECT_NE(std::string(e.what()).find("cannot open config.json"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace qh::format
