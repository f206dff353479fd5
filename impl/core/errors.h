// Typed errors: every failure names where it happened (file / tensor / layer), the rule that was broken, what was
// expected and what was found, so a user can act on the message without reading our code.
#pragma once

#include <stdexcept>
#include <string>

namespace qh {

// Where an error happened. Empty fields are left out of the message.
struct Where {
  std::string file;
  std::string tensor;
  std::string layer;

  std::string describe() const;  // e.g. "file 'model.safetensors', tensor 'w.qweight'"
};

class Error : public std::runtime_error {
 public:
  Error(Where where, std::string rule, std::string expected, std::string found);

  const Where& where() const { return where_; }
  const std::string& rule() const { return rule_; }
  const std::string& expected() const { return expected_; }
  const std::string& found() const { return found_; }

 private:
  Where where_;
  std::string rule_, expected_, found_;
};

// Malformed bytes on disk (safetensors, packed words). `code` says which check failed; the safetensors codes are
// named after the reference reader's error kinds (huggingface/safetensors tensor.rs, FORMATS.md section 5).
class FormatError : public Error {
 public:
  enum class Code {
    HeaderTooSmall,          // fewer than 8 bytes for the header length
    HeaderTooLarge,          // header length above the 100,000,000-byte limit
    InvalidHeaderLength,     // 8 + header length runs past the end of the file
    InvalidHeader,           // header bytes are not valid UTF-8 JSON of the expected form
    InvalidDtype,            // unknown dtype string
    DuplicateTensor,         // the same tensor name twice in one header
    InvalidOffset,           // data_offsets not contiguous from 0, reversed, overlapping or with gaps
    ValidationOverflow,      // element count or byte size overflows 64 bits
    MisalignedSlice,         // element count x bits is not a whole number of bytes
    TensorInvalidInfo,       // byte range length differs from numel x dtype size
    MetadataIncompleteBuffer,// the data does not end exactly at the end of the file
    InvalidMetadata,         // __metadata__ is not an object of string -> string
    MissingTensor,           // a tensor the caller needs is not in the file
    Other,
  };
  FormatError(Code code, Where where, std::string rule, std::string expected, std::string found);
  Code code() const { return code_; }

 private:
  Code code_;
};

const char* to_string(FormatError::Code code);

// Tensor shapes or sizes that do not fit the operation or format.
class ShapeError : public Error {
 public:
  using Error::Error;
};

// Numerical failures: non-finite input, a factorization that cannot be recovered.
class NumericError : public Error {
 public:
  using Error::Error;
};

// The operating system refused: open, mmap, write, rename, a child process.
class IoError : public Error {
 public:
  using Error::Error;
};

// Configuration files and command-line options with values outside what is supported.
class ConfigError : public Error {
 public:
  using Error::Error;
};

// A measurement that cannot be trusted: a GPU probe that fails or gives an impossible figure, a timing with every
// sample throttled. The perf harness stops rather than normalize by it.
class MeasurementError : public Error {
 public:
  using Error::Error;
};

// "errno 2 (No such file or directory)" for IoError's `found`.
std::string errno_text(int err);

}  // namespace qh
