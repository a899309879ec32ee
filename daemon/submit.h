#pragma once
// `docpipe submit` without a daemon to talk to: validate the job locally, make its relative paths
// absolute (against the job file's folder, as `validate` reads them), and drop it atomically into
// incoming/ (temp file, then rename), so the watch folder takes it at once and never half-written.

#include <ostream>
#include <string>

#include "config/daemon_config.h"

namespace docpipe {

// Returns the exit code: 0 dropped, 1 invalid job or I/O error (reason on `err`).
// `id_out`, if given, receives the job's id.
int submit_by_drop(const std::string& job_file, const DaemonConfig& config, std::ostream& out,
                   std::ostream& err, std::string* id_out = nullptr);

}  // namespace docpipe
