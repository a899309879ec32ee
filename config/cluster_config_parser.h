#pragma once
// The daemon config's "cluster" section, parsed apart from the rest of the file
// (config/daemon_config.cc calls it for the "cluster" key).

#include <nlohmann/json_fwd.hpp>
#include <string>

#include "config/daemon_config.h"
#include "core/json_util.h"

namespace docpipe {

// `value` is the section; relative paths (credentials, TLS files) are resolved against
// `base_dir`. Every problem is appended to `errors`, with paths under "cluster".
ClusterConfig parse_cluster_config(const nlohmann::json& value, const std::string& base_dir,
                                   FieldErrors& errors);

}  // namespace docpipe
