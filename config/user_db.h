#pragma once
// Names in the config (admin_group, quotas, http_tokens_file) resolved through the user
// database when the config loads. A name of digits is taken as the id itself, as admin_group has
// always taken a numeric gid, so that an id without a database entry can be named too.

#include <sys/types.h>

#include <optional>
#include <string>

namespace docpipe {

std::optional<uid_t> resolve_user(const std::string& name_or_uid);
std::optional<gid_t> resolve_group(const std::string& name_or_gid);

}  // namespace docpipe
