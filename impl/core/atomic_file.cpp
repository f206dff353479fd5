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

// A destination that is a symbolic link is written through: the link stays and its target is replaced (renaming
// over the link itself would turn it into a regular file). Chains are followed; a dangling link's target is created.
std::string resolve_links(const std::string& path) {
  std::string current = path;
  for (int hops = 0; hops < 40; ++hops) {
    std::error_code ec;
    if (!std::filesystem::is_symlink(current, ec)) return current;
    const auto target = std::filesystem::read_symlink(current, ec);
    if (ec) return current;
    current = (target.is_absolute() ? target : std::filesystem::path(directory_of(current)) / target).string();
  }
  return current;  // a loop: the rename fails with its own error, naming the path
}

// The mode a plain open(O_CREAT, 0666) would give (0666 minus the umask, read without changing it), or the
// existing destination's mode, so replacing a file never widens or narrows who can read it.
mode_t mode_for(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) return st.st_mode & 07777;
  mode_t mask = 022;
  if (std::FILE* f = std::fopen("/proc/self/status", "r")) {
    char line[256];
    while (std::fgets(line, sizeof line, f) != nullptr) {
      unsigned value = 0;
      if (std::sscanf(line, "Umask: %o", &value) == 1) mask = mode_t(value);
    }
    std::fclose(f);
  }
  return 0666 & ~mask;
}

}  // namespace

AtomicFile::AtomicFile(std::string path) : path_(resolve_links(path)) {
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
  ::fchmod(fd_, mode_for(path_));  // mkstemp creates 0600
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
