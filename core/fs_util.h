#pragma once
// Small file-system helpers for control-plane files (reports, error files, job files).
// Everything here is synchronous: call it from a worker thread, never from the loop thread.

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

// Writes `content` to a temp file next to `path` and renames it into place, so readers see the
// old file or the new one, never a mix. With `durable`, fsyncs the file and then its folder.
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

}  // namespace docpipe
