#pragma once
// Small file-system helpers for control-plane files (reports, error files, job files).
// Everything here is synchronous: call it from a worker thread, never from the loop thread.

#include <optional>
#include <string>
#include <string_view>

#include "core/result.h"

namespace docpipe {

Result<std::string> read_file(const std::string& path);

// A fresh temp name for a file NAME in `folder`: "FOLDER/.NAME.docpipe-tmp.RANDOM" (NAME cut to
// 200 bytes), which is_docpipe_temp_name() recognises; open it with O_EXCL.
std::string temp_path_for(std::string_view folder, std::string_view name);

// Creates `path` (O_EXCL: it must not exist) with `content`; with `durable`, fsyncs it. On failure
// nothing is left behind.
Status write_new_file(const std::string& path, std::string_view content, bool durable);

// A file that appears at `path` whole or not at all, written as a stream: create() makes a temp
// file (temp_path_for, O_EXCL) in the target's folder, write() appends through a buffer, commit()
// flushes, fsyncs the file (with `durable`), renames it over `path` and fsyncs the folder (with
// `durable`). abort(), the destructor, and any failure before the rename unlink the temp file, so
// nothing is left behind; readers of `path` see the old file or the new one, never a mix.
class AtomicFileWriter {
 public:
  static Result<AtomicFileWriter> create(const std::string& path, bool durable);
  AtomicFileWriter(AtomicFileWriter&& other) noexcept;
  AtomicFileWriter& operator=(AtomicFileWriter&& other) noexcept;
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;
  ~AtomicFileWriter() { abort(); }

  // The first failure sticks: later writes and commit() return it (the temp file is gone).
  Status write(std::string_view data);
  // Writes `data` now (after anything buffered), in one write(2) where the kernel takes it
  // whole, and allocates no buffer: for a writer that stays open long and batches on its own.
  Status write_through(std::string_view data);
  Status commit();
  // Drops the temp file; the target is untouched. Idempotent.
  void abort();

  const std::string& temp_path() const { return tmp_; }

 private:
  AtomicFileWriter(std::string path, std::string tmp, int fd, bool durable);
  Status flush();
  Status fail(Error error);

  static constexpr size_t kBufferBytes = 1 << 16;
  std::string path_;
  std::string tmp_;
  int fd_ = -1;
  bool durable_ = false;
  std::string buf_;
  std::optional<Error> failed_;
};

// Writes `content` to a temp file next to `path` and renames it into place (AtomicFileWriter).
// With `durable`, fsyncs the file and then its folder.
Status write_file_atomic(const std::string& path, std::string_view content, bool durable);

// mkdir -p.
Status make_dirs(const std::string& path);

// fsync of a folder, so that a rename into it survives a crash.
Status fsync_dir(const std::string& path);

bool path_exists(const std::string& path);

// Outputs being written (".NAME.docpipe-tmp.RANDOM") and other docpipe temp files
// (".docpipe-tmp*"): never documents, and removed after a crash.
bool is_docpipe_temp_name(std::string_view name);

// Removes docpipe temp files anywhere under `dir` (symlinks not followed, every step relative to
// an open folder). Returns how many.
size_t remove_docpipe_temp_files(const std::string& dir);
// The same beneath an open folder (a job's output folder, opened as the job opens it); takes
// over `dir_fd` and closes it.
size_t remove_docpipe_temp_files_at(int dir_fd);

}  // namespace docpipe
