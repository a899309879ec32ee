#pragma once
// Would the submitter of a job have been allowed this access? The daemon runs with its own (often
// wider) rights, so a job must check, for every file it reads or writes and every folder on the
// way, what the kernel would have decided for the submitter's uid and groups: the mode bits, or
// the POSIX access ACL when the file has one (evaluated as fs/posix_acl.c does), and root's
// override. This is a pure decision over an open descriptor; nothing here changes identity.

#include <sys/stat.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/credentials.h"

namespace docpipe {

// One entry of a POSIX ACL as stored in "system.posix_acl_access".
struct AclEntry {
  uint16_t tag = 0;   // kAclUserObj .. kAclOther
  uint16_t perm = 0;  // 4 read, 2 write, 1 execute/search
  uint32_t id = 0;    // uid or gid for named entries
};

inline constexpr uint16_t kAclUserObj = 0x01;
inline constexpr uint16_t kAclUser = 0x02;
inline constexpr uint16_t kAclGroupObj = 0x04;
inline constexpr uint16_t kAclGroup = 0x08;
inline constexpr uint16_t kAclMask = 0x10;
inline constexpr uint16_t kAclOther = 0x20;

// Parses the binary xattr: a 4-byte little-endian version (2), then 8-byte entries {u16 tag,
// u16 perm, u32 id}. nullopt if malformed (callers then deny).
std::optional<std::vector<AclEntry>> parse_posix_acl(std::string_view xattr);

// The inverse, for tests that set ACLs with fsetxattr.
std::string encode_posix_acl(const std::vector<AclEntry>& entries);

// `want` is a mask of R_OK, W_OK, X_OK. Decides from the mode bits alone, or from `acl` when
// given (as the kernel: owner entry; named users, masked; owning and named groups, masked, any
// match that grants wins; other). Root may do anything but execute a file with no x bit at all.
bool permits(const struct stat& st, const std::vector<AclEntry>* acl, const Credentials& who,
             int want);

// Reads the access ACL of `fd` (also an O_PATH descriptor) and decides. An unreadable or
// malformed ACL denies.
bool may_access(int fd, const struct stat& st, const Credentials& who, int want);

// "read", "write to", "search", "list" ... for messages: what `want` asks, of a folder or a file.
std::string access_words(int want, bool folder);

}  // namespace docpipe
