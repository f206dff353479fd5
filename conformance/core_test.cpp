// impl/core: error messages that name where, what rule, what was expected and found; progress output that suits
// its destination; crash-safe writes that never leave a partial destination or a stray temporary file.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "conformance/testing.h"
#include "impl/core/atomic_file.h"
#include "impl/core/errors.h"
#include "impl/core/progress.h"

namespace qh {
namespace {

std::string read_all(std::FILE* f) {
  std::rewind(f);
  std::string out;
  char buf[512];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, f)) out.append(buf, n);
  return out;
}

TEST(CoreErrors, MessageNamesWhereRuleExpectedAndFound) {
  const ShapeError e(Where{.file = "model.safetensors", .tensor = "q_proj.qweight", .layer = "layers.0.q_proj"},
                     "qweight rows must be in_features / 8", "512 rows", "511 rows");
  EXPECT_STREQ(e.what(),
               "file 'model.safetensors', layer 'layers.0.q_proj', tensor 'q_proj.qweight': qweight rows must be "
               "in_features / 8 (expected 512 rows, found 511 rows)");
  EXPECT_EQ(e.where().layer, "layers.0.q_proj");
  EXPECT_EQ(e.rule(), "qweight rows must be in_features / 8");
}

TEST(CoreErrors, EmptyWhereIsLeftOut) {
  const ConfigError e(Where{}, "--device takes auto, cpu or cuda", "auto | cpu | cuda", "'gpu'");
  EXPECT_STREQ(e.what(), "--device takes auto, cpu or cuda (expected auto | cpu | cuda, found 'gpu')");
}

TEST(CoreErrors, SubclassesAreCatchableAsError) {
  EXPECT_THROW(throw NumericError(Where{.layer = "l"}, "r", "e", "f"), Error);
  EXPECT_THROW(throw FormatError(FormatError::Code::InvalidOffset, Where{}, "r", "e", "f"), Error);
  EXPECT_STREQ(to_string(FormatError::Code::InvalidOffset), "InvalidOffset");
}

TEST(CoreProgress, PlainLinesWhenNotATerminal) {
  std::FILE* out = std::tmpfile();
  ASSERT_NE(out, nullptr);
  {
    Progress p("quantize", 2, Progress::Style::Lines, out);
    p.step("layer a");
    p.step("layer b");
  }
  const std::string text = read_all(out);
  std::fclose(out);
  EXPECT_NE(text.find("[quantize] 1/2 layer a"), std::string::npos) << text;
  EXPECT_NE(text.find("[quantize] 2/2 layer b"), std::string::npos) << text;
  EXPECT_NE(text.find("[quantize] 2/2 done in"), std::string::npos) << text;
  EXPECT_EQ(text.find('\r'), std::string::npos) << "a log must not hold carriage returns";
}

TEST(CoreProgress, BarRedrawsOneLine) {
  std::FILE* out = std::tmpfile();
  ASSERT_NE(out, nullptr);
  {
    Progress p("run", 4, Progress::Style::Bar, out);
    for (int i = 0; i < 4; ++i) p.step("suite");
  }
  const std::string text = read_all(out);
  std::fclose(out);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\r'), 4);
  EXPECT_NE(text.find("[##############################] 4/4"), std::string::npos) << text;
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 2);  // end of the bar, then the summary line
}

TEST(CoreAtomicFile, UncommittedWriteLeavesDestinationAndNoTemporary) {
  testing::TempDir dir;
  const std::string path = dir.file("results.json");
  write_file_atomically(path, "old complete file");
  {
    AtomicFile f(path);
    f.write("new but unfinis");
    // destroyed without commit(), as when a writer throws half-way
  }
  EXPECT_EQ(testing::read_bytes(path).size(), std::string("old complete file").size());
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 1);
}

TEST(CoreAtomicFile, CommitReplacesDestination) {
  testing::TempDir dir;
  const std::string path = dir.file("out.txt");
  write_file_atomically(path, "first");
  write_file_atomically(path, "second version");
  const auto bytes = testing::read_bytes(path);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()), "second version");
}

std::string text_of(const std::string& path) {
  const auto bytes = testing::read_bytes(path);
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

mode_t mode_of(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

// Replacing a file must not change who can read it: a private 0600 checkpoint stays private, a new file follows the
// umask like any other file the process creates (mkstemp alone would leave every output 0600).
TEST(CoreAtomicFile, KeepsTheReplacedFilesModeAndFollowsTheUmaskForNewFiles) {
  testing::TempDir dir;
  const std::string existing = dir.file("private.json");
  write_file_atomically(existing, "v1");
  ASSERT_EQ(::chmod(existing.c_str(), 0600), 0);
  write_file_atomically(existing, "v2");
  EXPECT_EQ(mode_of(existing), 0600u);

  const mode_t old_mask = ::umask(027);
  write_file_atomically(dir.file("new.json"), "x");
  ::umask(old_mask);
  EXPECT_EQ(mode_of(dir.file("new.json")), 0640u);
}

// A results path that is a symbolic link (e.g. latest.json -> runs/42.json) stays a link; its target is replaced.
TEST(CoreAtomicFile, WritesThroughASymbolicLink) {
  testing::TempDir dir;
  std::filesystem::create_directories(dir.file("runs"));
  write_file_atomically(dir.file("runs/42.json"), "old");
  std::filesystem::create_symlink("runs/42.json", dir.file("latest.json"));
  write_file_atomically(dir.file("latest.json"), "new");
  EXPECT_TRUE(std::filesystem::is_symlink(dir.file("latest.json")));
  EXPECT_EQ(text_of(dir.file("runs/42.json")), "new");
  EXPECT_EQ(text_of(dir.file("latest.json")), "new");
}

}  // namespace
}  // namespace qh
