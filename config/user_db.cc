#include "config/user_db.h"

#include <grp.h>
#include <pwd.h>

#include <cerrno>
#include <vector>

namespace docpipe {

namespace {

std::optional<unsigned long> numeric_id(const std::string& text) {
  if (text.empty() || text.size() > 10 || text.find_first_not_of("0123456789") != std::string::npos)
    return std::nullopt;
  unsigned long v = std::stoul(text);
  if (v >= static_cast<uid_t>(-1)) return std::nullopt;
  return v;
}

}  // namespace

std::optional<uid_t> resolve_user(const std::string& text) {
  if (auto id = numeric_id(text)) return static_cast<uid_t>(*id);
  std::vector<char> buf(16384);
  struct passwd pw {};
  struct passwd* found = nullptr;
  int rc;
  while ((rc = ::getpwnam_r(text.c_str(), &pw, buf.data(), buf.size(), &found)) == ERANGE &&
         buf.size() < (1u << 22)) {
    buf.resize(buf.size() * 2);
  }
  if (rc != 0 || found == nullptr) return std::nullopt;
  return pw.pw_uid;
}

std::optional<gid_t> resolve_group(const std::string& text) {
  if (auto id = numeric_id(text)) return static_cast<gid_t>(*id);
  std::vector<char> buf(16384);
  struct group gr {};
  struct group* found = nullptr;
  int rc;
  while ((rc = ::getgrnam_r(text.c_str(), &gr, buf.data(), buf.size(), &found)) == ERANGE &&
         buf.size() < (1u << 22)) {
    buf.resize(buf.size() * 2);
  }
  if (rc != 0 || found == nullptr) return std::nullopt;
  return gr.gr_gid;
}

}  // namespace docpipe
