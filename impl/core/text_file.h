// Reading a whole (small) text file: configs, JSON reports.
#pragma once

#include <string>

namespace qh {

// The bytes of `path`; throws IoError naming the file, with the rule "cannot open <what>" and the errno text.
std::string read_text_file(const std::string& path, const std::string& what);

}  // namespace qh
