#include "daemon/peer_credentials.h"

#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

namespace docpipe {

Result<Credentials> socket_peer_credentials(int fd) {
  struct ucred cred {};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return errno_error("control socket: SO_PEERCRED", errno);
  }
  Credentials who;
  who.uid = cred.uid;
  who.gid = cred.gid;
  std::vector<gid_t> groups(64);
  for (;;) {
    socklen_t bytes = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &bytes) == 0) {
      groups.resize(bytes / sizeof(gid_t));
      break;
    }
    // ERANGE: the kernel says in `bytes` how much it needs.
    size_t needed = bytes / sizeof(gid_t);
    if (errno != ERANGE || needed <= groups.size() || needed > kMaxSupplementaryGroups) {
      return errno_error("control socket: SO_PEERGROUPS", errno == ERANGE ? E2BIG : errno);
    }
    groups.resize(needed);
  }
  who.groups = std::move(groups);
  return who;
}

Result<Credentials> credentials_for_uid(uid_t uid) {
  Credentials who;
  who.uid = uid;
  who.gid = static_cast<gid_t>(-1);
  long size_hint = ::sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buf(size_hint > 0 ? static_cast<size_t>(size_hint) : 4096);
  struct passwd pw {};
  struct passwd* found = nullptr;
  int rc;
  while ((rc = ::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found)) == ERANGE &&
         buf.size() < (1u << 20)) {
    buf.resize(buf.size() * 2);
  }
  if (rc != 0) return errno_error("look up user " + std::to_string(uid), rc);
  if (found == nullptr) return who;  // no such user: the uid alone, no group
  who.gid = pw.pw_gid;
  std::vector<gid_t> groups(64);
  for (;;) {
    int n = static_cast<int>(groups.size());
    if (::getgrouplist(pw.pw_name, pw.pw_gid, groups.data(), &n) >= 0) {
      groups.resize(static_cast<size_t>(n));
      break;
    }
    // -1: too small, and `n` now says how many there are.
    if (static_cast<size_t>(n) <= groups.size() ||
        static_cast<size_t>(n) > kMaxSupplementaryGroups) {
      return make_error(ErrorCode::kIo, "look up the groups of user " + std::to_string(uid) +
                                            ": more than " +
                                            std::to_string(kMaxSupplementaryGroups));
    }
    groups.resize(static_cast<size_t>(n));
  }
  who.groups = std::move(groups);
  return who;
}

std::optional<Credentials> submitter_for(const Credentials& who) {
  if (who.is_root()) return std::nullopt;
  return who;
}

bool is_admin(const Credentials& who, std::optional<gid_t> admin_gid) {
  return who.is_root() || (admin_gid && who.in_group(*admin_gid));
}

}  // namespace docpipe
