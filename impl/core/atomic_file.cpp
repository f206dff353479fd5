#include "impl/core/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <utility>
#include <vector>

#include "impl/core/errors.h"

namespace qh {

namespace {

std::string directory_of(const std::string& path) {
  const auto parent = std::filesystem::path(path).parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

}  // namespace

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  // mkstemp's template: same directory as the destination so that rename() stays within one file system.
  std::string pattern = path_ + ".tmp-XXXXXX";
  std::vector<char> buf(pattern.begin(), pattern.end());
  buf.push_back('\0');
  fd_ = ::mkstemp(buf.data());
  if (fd_ < 0) {
    throw IoError(Where{.file = path_}, "cannot create a temporary file next to the destination",
                  "a writable directory '" + directory_of(path_) + "'", errno_text(errno));
  }
  temp_path_ = buf.data();
  ::fchmod(fd_, 0644);  // mkstemp creates 0600; checkpoints and reports are meant to be shared
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_ && !temp_path_.empty()) ::unlink(temp_path_.c_str());
}

void AtomicFile::write(const void* data, std::size_t size) {
  if (fd_ < 0) {
    throw IoError(Where{.file = path_}, "write after commit", "an open temporary file", "a committed file");
  }
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd_, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw IoError(Where{.file = path_}, "cannot write the temporary file '" + temp_path_ + "'",
                    std::to_string(size) + " more bytes written", errno_text(errno));
    }
    p += n;
    size -= std::size_t(n);
  }
}

void AtomicFile::commit() {
  if (::fsync(fd_) != 0) {
    throw IoError(Where{.file = path_}, "cannot flush the temporary file to disk", "fsync to succeed",
                  errno_text(errno));
  }
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) {
    throw IoError(Where{.file = path_}, "cannot close the temporary file", "close to succeed", errno_text(errno));
  }
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    throw IoError(Where{.file = path_}, "cannot rename the temporary file over the destination",
                  "rename('" + temp_path_ + "') to succeed", errno_text(errno));
  }
  committed_ = true;
  // Make the rename itself durable; failure here cannot undo it, so it is not an error.
  const int dir = ::open(directory_of(path_).c_str(), O_RDONLY | O_DIRECTORY);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
}

void write_file_atomically(const std::string& path, std::string_view content) {
  AtomicFile file(path);
  file.write(content);
  file.commit();
}

}  // namespace qh
