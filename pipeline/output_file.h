#pragma once
// OutputFile: an output document being written. The bytes go to a temp file in the target folder
// (".NAME.docpipe-tmp.RANDOM", so it is on the same file system and the rename is atomic), and
// commit() renames it into place: readers see the whole output or none of it. The SHA-256 is
// taken of the bytes as they are written, so it matches the file without reading it back.

#include <cstdint>
#include <string>
#include <string_view>

#include "core/job_spec.h"
#include "core/result.h"
#include "pipeline/sha256.h"

namespace docpipe {

class OutputFile {
 public:
  enum class Committed { kWritten, kTargetExists };

  OutputFile() = default;
  ~OutputFile() { discard(); }
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  // Creates the temp file for `final_path` (O_EXCL, mode 0644), creating missing parent folders.
  Status create(const std::string& final_path);
  Status write(std::string_view data);
  Status sync();  // fsync the temp file

  // Closes and renames the temp file to the final path. kReplace replaces an existing file; kSkip
  // and kFail never do (RENAME_NOREPLACE): they get kTargetExists and the temp file is removed.
  // With `sync_folder`, the folder is fsynced after the rename so the new name survives a crash.
  Result<Committed> commit(IfExists mode, bool sync_folder);

  // Closes and removes the temp file, if any. Safe to call at any time.
  void discard();

  bool open() const { return !temp_path_.empty(); }
  const std::string& temp_path() const { return temp_path_; }
  uint64_t bytes_written() const { return bytes_written_; }
  Result<std::string> sha256_hex() { return sha_.hex_digest(); }

 private:
  Status close_fd();

  std::string final_path_;
  std::string temp_path_;
  int fd_ = -1;
  uint64_t bytes_written_ = 0;
  Sha256 sha_;
};

}  // namespace docpipe
