#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "impl/core/errors.h"
#include "impl/format/safetensors.h"

namespace qh::format {

namespace {

// Closes the descriptor on every path out of open(); the mapping outlives it.
struct FdGuard {
  int fd;
  ~FdGuard() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

std::shared_ptr<const SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  const FdGuard fd{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (fd.fd < 0) {
    throw IoError(Where{.file = path}, "cannot open the safetensors file", "a readable file", errno_text(errno));
  }
  struct stat st {};
  if (::fstat(fd.fd, &st) != 0) {
    throw IoError(Where{.file = path}, "cannot stat the safetensors file", "fstat to succeed", errno_text(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    throw IoError(Where{.file = path}, "a safetensors file must be a regular file", "a regular file",
                  S_ISDIR(st.st_mode) ? "a directory" : "a special file");
  }
  std::shared_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->size_ = std::uint64_t(st.st_size);
  if (file->size_ < 8) {
    // Too short to map meaningfully (and mmap refuses length 0): let the parser report it.
    parse_header({}, file->size_, path);
  }
  // MAP_PRIVATE over an O_RDONLY descriptor: writes through views go to private copy-on-write pages and never
  // reach the file. MAP_NORESERVE: no swap is reserved for pages that are only ever read.
  void* base = ::mmap(nullptr, file->size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd.fd, 0);
  if (base == MAP_FAILED) {
    throw IoError(Where{.file = path}, "cannot map the safetensors file",
                  "mmap of " + std::to_string(file->size_) + " bytes to succeed", errno_text(errno));
  }
  file->base_ = static_cast<std::byte*>(base);
  file->header_ = parse_header({file->base_, file->size_}, file->size_, path);
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (base_ != nullptr) ::munmap(base_, size_);
}

const TensorInfo& SafetensorsFile::tensor(std::string_view name) const {
  if (const TensorInfo* t = header_.find(name)) return *t;
  throw FormatError(FormatError::Code::MissingTensor, Where{.file = path_, .tensor = std::string(name)},
                    "tensor not in the file", "a tensor named '" + std::string(name) + "'",
                    std::to_string(header_.tensors.size()) + " other tensors");
}

std::span<std::byte> SafetensorsFile::bytes(const TensorInfo& info) const {
  return {base_ + header_.data_start + info.begin, info.nbytes()};
}

}  // namespace qh::format
