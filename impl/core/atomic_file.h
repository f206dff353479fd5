// Crash-safe file writes: data goes to a temporary file in the destination's directory, which is flushed to disk
// and renamed over the destination only when complete. Readers see the old complete file or the new complete
// file, never a partial one; a writer that fails or is killed leaves the destination untouched (and may leave its
// `<destination>.tmp-XXXXXX`, which nothing reads). The new file gets the replaced file's mode, or 0666 minus the
// umask; a destination that is a symbolic link keeps the link and has its target replaced.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace qh {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);  // throws IoError when the temporary file cannot be created
  ~AtomicFile();                          // removes the temporary file unless commit() succeeded
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, std::size_t size);
  void write(std::string_view text) { write(text.data(), text.size()); }
  // fsync, rename over the destination, fsync the directory. No further writes afterwards.
  void commit();

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::string temp_path_;
  int fd_ = -1;
  bool committed_ = false;
};

// The whole of `content` as the new `path`, atomically.
void write_file_atomically(const std::string& path, std::string_view content);

}  // namespace qh
