#pragma once
// strace in e2e tests: finding one that can trace here, and reading an `strace -f -y -o FILE`
// trace (the durability tests): each call's name and arguments, strings decoded, and descriptors
// named by the paths -y prints for them.

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace e2e {

class TempDir;

// strace's path, or "" once skip_test() has said why nothing can be traced here (not installed,
// or ptrace not permitted: tried on `true` with its output in `tmp`).
std::string usable_strace(const TempDir& tmp);

// One traced system call: its name and its arguments as strace printed them.
struct Syscall {
  size_t index = 0;  // position in the trace (the order in which the calls started)
  std::string name;
  std::vector<std::string> args;
};

// Decodes a strace string argument ("..." with C escapes; a truncated one ends in "...").
std::string unquote(std::string_view token);

// The path strace -y shows for a descriptor argument ("3</a/b>" -> "/a/b"), or "".
std::string fd_path(std::string_view token);

// Every call in the trace file, in the order they started (resumed calls joined to their start).
std::vector<Syscall> parse_trace(const std::string& path);

struct Rename {
  size_t index;
  std::string from, to;
};

// Every rename, renameat and renameat2, as absolute paths.
std::vector<Rename> renames(const std::vector<Syscall>& calls);

// Every way a file got a new name, in trace order: the renames, and each linkat (an anonymous
// O_TMPFILE output linked into place; `from` is then what strace shows for its descriptor).
std::vector<Rename> publishes(const std::vector<Syscall>& calls);

// (index, path) of every fsync and fdatasync.
std::vector<std::pair<size_t, std::string>> syncs(const std::vector<Syscall>& calls);

}  // namespace e2e
