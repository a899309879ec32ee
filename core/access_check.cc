#include "core/access_check.h"

#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace docpipe {

namespace {

constexpr uint32_t kAclVersion = 2;

uint32_t load_le32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return uint32_t{u[0]} | uint32_t{u[1]} << 8 | uint32_t{u[2]} << 16 | uint32_t{u[3]} << 24;
}

uint16_t load_le16(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return static_cast<uint16_t>(u[0] | u[1] << 8);
}

void store_le(std::string& out, uint32_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// The mode bits' class for `who`, without ACL (fs/namei.c acl_permission_check).
bool mode_permits(const struct stat& st, const Credentials& who, int want) {
  unsigned mode = st.st_mode;
  if (who.uid == st.st_uid) {
    mode >>= 6;
  } else if (who.in_group(st.st_gid)) {
    mode >>= 3;
  }
  return (static_cast<int>(mode) & want & 7) == want;
}

// fs/posix_acl.c posix_acl_permission(): entries are sorted by tag.
bool acl_permits(const struct stat& st, const std::vector<AclEntry>& acl, const Credentials& who,
                 int want) {
  bool found_group = false;
  for (size_t i = 0; i < acl.size(); ++i) {
    const AclEntry& e = acl[i];
    bool masked = false;
    switch (e.tag) {
      case kAclUserObj:
        if (st.st_uid == who.uid) return (e.perm & want) == want;
        continue;
      case kAclUser:
        if (e.id != who.uid) continue;
        masked = true;
        break;
      case kAclGroupObj:
      case kAclGroup: {
        const gid_t g = e.tag == kAclGroupObj ? st.st_gid : static_cast<gid_t>(e.id);
        if (!who.in_group(g)) continue;
        found_group = true;
        if ((e.perm & want) != want) continue;
        masked = true;
        break;
      }
      case kAclMask:
        continue;
      case kAclOther:
        if (found_group) return false;
        return (e.perm & want) == want;
      default:
        return false;  // an unknown tag: deny rather than guess
    }
    if (masked) {
      for (size_t j = i + 1; j < acl.size(); ++j) {
        if (acl[j].tag == kAclMask) return (e.perm & acl[j].perm & want) == want;
      }
      return (e.perm & want) == want;
    }
  }
  return false;  // no "other" entry: a malformed ACL
}

}  // namespace

std::optional<std::vector<AclEntry>> parse_posix_acl(std::string_view xattr) {
  if (xattr.size() < 4 || (xattr.size() - 4) % 8 != 0) return std::nullopt;
  if (load_le32(xattr.data()) != kAclVersion) return std::nullopt;
  std::vector<AclEntry> entries;
  entries.reserve((xattr.size() - 4) / 8);
  for (size_t off = 4; off < xattr.size(); off += 8) {
    const char* p = xattr.data() + off;
    entries.push_back(AclEntry{load_le16(p), load_le16(p + 2), load_le32(p + 4)});
  }
  return entries;
}

std::string encode_posix_acl(const std::vector<AclEntry>& entries) {
  std::string out;
  store_le(out, kAclVersion, 4);
  for (const AclEntry& e : entries) {
    store_le(out, e.tag, 2);
    store_le(out, e.perm, 2);
    store_le(out, e.id, 4);
  }
  return out;
}

bool permits(const struct stat& st, const std::vector<AclEntry>* acl, const Credentials& who,
             int want) {
  want &= R_OK | W_OK | X_OK;
  if (who.is_root()) {
    // CAP_DAC_OVERRIDE: everything, except executing a non-folder that no one may execute.
    if ((want & X_OK) != 0 && !S_ISDIR(st.st_mode) && (st.st_mode & 0111) == 0) return false;
    return true;
  }
  if (acl != nullptr) return acl_permits(st, *acl, who, want);
  return mode_permits(st, who, want);
}

bool may_access(int fd, const struct stat& st, const Credentials& who, int want) {
  if (who.is_root()) return permits(st, nullptr, who, want);
  char buf[4 + 8 * 32];
  std::string big;
  ssize_t n = ::fgetxattr(fd, "system.posix_acl_access", buf, sizeof buf);
  if (n < 0 && errno == EBADF) {
    // An O_PATH descriptor has no xattr calls of its own: go through its /proc link.
    char link[64];
    std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    n = ::getxattr(link, "system.posix_acl_access", buf, sizeof buf);
  }
  if (n < 0 && errno == ERANGE) {
    // More than 32 entries: ask for the size and read it whole.
    ssize_t size = ::fgetxattr(fd, "system.posix_acl_access", nullptr, 0);
    if (size < 0) return false;
    big.resize(static_cast<size_t>(size));
    n = ::fgetxattr(fd, "system.posix_acl_access", big.data(), big.size());
    if (n < 0) return false;
    big.resize(static_cast<size_t>(n));
  }
  if (n < 0) {
    // No ACL (ENODATA), or none possible here: the mode bits decide.
    if (errno == ENODATA || errno == ENOTSUP) return permits(st, nullptr, who, want);
    return false;
  }
  std::string_view raw = big.empty() ? std::string_view(buf, static_cast<size_t>(n)) : big;
  std::optional<std::vector<AclEntry>> acl = parse_posix_acl(raw);
  if (!acl) return false;
  return permits(st, &*acl, who, want);
}

std::string access_words(int want, bool folder) {
  std::string out;
  auto add = [&out](const char* w) {
    if (!out.empty()) out += " and ";
    out += w;
  };
  if (want & R_OK) add(folder ? "list" : "read");
  if (want & W_OK) add(folder ? "create files in" : "write");
  if (want & X_OK) add(folder ? "search" : "execute");
  return out;
}

}  // namespace docpipe
