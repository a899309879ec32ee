#pragma once
// Lexical path helpers shared by job validation, the document walker and the daemon config.
// Everything here is pure string work except real_path(), which asks the file system.

#include <string>
#include <string_view>

namespace docpipe {

inline bool is_absolute_path(std::string_view p) { return !p.empty() && p.front() == '/'; }

// Collapses "//", "." and ".." lexically; ".." never climbs above "/" (an absolute path stays
// absolute). A relative path keeps leading ".." segments. "" stays "".
std::string normalize_path(std::string_view path);

// `path` if absolute, else base/path; normalised either way.
std::string resolve_path(std::string_view base, std::string_view path);

// True if `path` is `root` or lies below it (both absolute and normalised).
bool path_is_within(std::string_view path, std::string_view root);

// The part of `path` below `root` ("" when equal); only meaningful when path_is_within().
std::string_view path_below(std::string_view path, std::string_view root);

// A relative path with no empty, "." or ".." component ("a/b.txt"; not "", "/a", "a//b",
// "a/../b").
bool is_plain_relative_path(std::string_view path);

// The folder part of a normalised path ("/a/b" -> "/a", "/a" -> "/", "a" -> "").
std::string_view parent_path(std::string_view path);

// The last segment of a path ("/a/b.md" -> "b.md").
std::string_view base_name(std::string_view path);

// `path` made absolute against the working directory, normalised.
std::string absolute_path(std::string_view path);

// A job file's default id: its name without folders and without ".json" ("in/a.json" -> "a").
std::string job_file_stem(std::string_view path);

// realpath(3), or "" with errno set.
std::string real_path(const std::string& path);

}  // namespace docpipe
