#include "core/path_util.h"

#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <vector>

namespace docpipe {

std::string normalize_path(std::string_view path) {
  const bool absolute = is_absolute_path(path);
  std::vector<std::string_view> segments;
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t slash = path.find('/', pos);
    if (slash == std::string_view::npos) slash = path.size();
    std::string_view seg = path.substr(pos, slash - pos);
    pos = slash + 1;
    if (seg.empty() || seg == ".") continue;
    if (seg == "..") {
      if (!segments.empty() && segments.back() != "..") {
        segments.pop_back();
      } else if (!absolute) {
        segments.push_back(seg);  // a relative path may legitimately start above its base
      }
      continue;
    }
    segments.push_back(seg);
  }
  std::string out = absolute ? "/" : "";
  for (size_t i = 0; i < segments.size(); ++i) {
    if (i > 0) out += '/';
    out += segments[i];
  }
  return out;
}

std::string resolve_path(std::string_view base, std::string_view path) {
  if (is_absolute_path(path)) return normalize_path(path);
  std::string joined(base);
  joined += '/';
  joined += path;
  return normalize_path(joined);
}

bool path_is_within(std::string_view path, std::string_view root) {
  if (root == "/") return is_absolute_path(path);
  if (path.size() < root.size() || path.substr(0, root.size()) != root) return false;
  return path.size() == root.size() || path[root.size()] == '/';
}

std::string_view path_below(std::string_view path, std::string_view root) {
  if (path.size() <= root.size()) return {};
  size_t skip = root == "/" ? 1 : root.size() + 1;
  return path.substr(skip);
}

std::string_view parent_path(std::string_view path) {
  size_t slash = path.rfind('/');
  if (slash == std::string_view::npos) return {};
  if (slash == 0) return path.substr(0, 1);
  return path.substr(0, slash);
}

std::string_view base_name(std::string_view path) {
  size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

std::string real_path(const std::string& path) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf) == nullptr) return {};
  return buf;
}

std::string absolute_path(std::string_view path) {
  if (is_absolute_path(path)) return normalize_path(path);
  char buf[4096];
  const char* cwd = ::getcwd(buf, sizeof buf);
  return resolve_path(cwd != nullptr ? cwd : "/", path);
}

std::string job_file_stem(std::string_view path) {
  std::string_view name = base_name(path);
  if (name.size() > 5 && name.substr(name.size() - 5) == ".json") name.remove_suffix(5);
  return std::string(name);
}

bool is_plain_relative_path(std::string_view path) {
  if (path.empty() || path.front() == '/') return false;
  for (size_t start = 0; start <= path.size();) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    const std::string_view part = path.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") return false;
    start = end + 1;
  }
  return true;
}

}  // namespace docpipe
