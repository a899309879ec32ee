#pragma once
// Who is on the other end: the control socket's peer (SO_PEERCRED for uid and gid,
// SO_PEERGROUPS for the supplementary groups the kernel recorded at connect()), or the owner of
// a job file (its uid, with the groups of that user from the user database). See
// docs/design-rights.md for why the kernel's word, and not anything the client says, is used.

#include <sys/types.h>

#include <optional>

#include "core/credentials.h"
#include "core/result.h"

namespace docpipe {

// At most this many supplementary groups are taken (the kernel's NGROUPS_MAX); a lookup that
// reports more is refused rather than truncated, since a missing group could only deny access.
inline constexpr size_t kMaxSupplementaryGroups = 65536;

// The peer of a connected Unix socket. Cheap (two getsockopt calls): fine on the loop thread.
Result<Credentials> socket_peer_credentials(int fd);

// The credentials a job file owned by `uid` acts with: the user's primary group and
// supplementary groups (getpwuid_r + getgrouplist). A uid without a user database entry gets
// no group at all (gid (gid_t)-1): the file's own group says nothing about its owner, and in a
// setgid incoming/ it would be the daemon's group. Blocking (NSS may ask a network service):
// call off the loop thread.
Result<Credentials> credentials_for_uid(uid_t uid);

// The submitter a job runs as: nullopt (unrestricted) for root, else the credentials.
std::optional<Credentials> submitter_for(const Credentials& who);

// Root, or a member (primary or supplementary) of the admin group: sees and touches every job.
bool is_admin(const Credentials& who, std::optional<gid_t> admin_gid);

}  // namespace docpipe
