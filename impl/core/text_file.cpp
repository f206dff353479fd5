#include "impl/core/text_file.h"

#include <cerrno>
#include <fstream>
#include <sstream>

#include "impl/core/errors.h"

namespace qh {

std::string read_text_file(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(Where{.file = path}, "cannot open " + what, "a readable file", errno_text(errno));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace qh
