#include "impl/core/errors.h"

#include <cstring>
#include <utility>

namespace qh {

namespace {

std::string compose(const Where& where, const std::string& rule, const std::string& expected,
                    const std::string& found) {
  std::string msg = where.describe();
  if (!msg.empty()) msg += ": ";
  msg += rule;
  msg += " (expected " + expected + ", found " + found + ")";
  return msg;
}

}  // namespace

std::string Where::describe() const {
  std::string out;
  auto add = [&out](const char* label, const std::string& value) {
    if (value.empty()) return;
    if (!out.empty()) out += ", ";
    out += label;
    out += " '" + value + "'";
  };
  add("file", file);
  add("layer", layer);
  add("tensor", tensor);
  return out;
}

Error::Error(Where where, std::string rule, std::string expected, std::string found)
    : std::runtime_error(compose(where, rule, expected, found)),
      where_(std::move(where)),
      rule_(std::move(rule)),
      expected_(std::move(expected)),
      found_(std::move(found)) {}

FormatError::FormatError(Code code, Where where, std::string rule, std::string expected, std::string found)
    : Error(std::move(where), std::move(rule), std::move(expected), std::move(found)), code_(code) {}

const char* to_string(FormatError::Code code) {
  using C = FormatError::Code;
  switch (code) {
    case C::HeaderTooSmall: return "HeaderTooSmall";
    case C::HeaderTooLarge: return "HeaderTooLarge";
    case C::InvalidHeaderLength: return "InvalidHeaderLength";
    case C::InvalidHeader: return "InvalidHeader";
    case C::InvalidDtype: return "InvalidDtype";
    case C::DuplicateTensor: return "DuplicateTensor";
    case C::InvalidOffset: return "InvalidOffset";
    case C::ValidationOverflow: return "ValidationOverflow";
    case C::MisalignedSlice: return "MisalignedSlice";
    case C::TensorInvalidInfo: return "TensorInvalidInfo";
    case C::MetadataIncompleteBuffer: return "MetadataIncompleteBuffer";
    case C::InvalidMetadata: return "InvalidMetadata";
    case C::MissingTensor: return "MissingTensor";
    case C::Other: return "Other";
  }
  return "Unknown";
}

std::string errno_text(int err) {
  return "errno " + std::to_string(err) + " (" + std::strerror(err) + ")";
}

}  // namespace qh
