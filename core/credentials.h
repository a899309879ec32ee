#pragma once
// Who a job acts for. A job must never read or write anything its submitter could not, so every
// job carries its submitter's identity: the control socket's peer (SO_PEERCRED, SO_PEERGROUPS)
// or the owner of a job file dropped into incoming/. File access checks (core/access_check.h)
// evaluate mode bits and POSIX ACLs against it.

#include <sys/types.h>

#include <algorithm>
#include <vector>

namespace docpipe {

struct Credentials {
  uid_t uid = 0;
  gid_t gid = 0;              // primary group
  std::vector<gid_t> groups;  // supplementary groups (may repeat gid)

  bool is_root() const { return uid == 0; }
  bool in_group(gid_t g) const {
    return g == gid || std::find(groups.begin(), groups.end(), g) != groups.end();
  }
  bool operator==(const Credentials&) const = default;
};

}  // namespace docpipe
