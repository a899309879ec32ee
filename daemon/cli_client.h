#pragma once
// The CLI commands that talk to a running daemon over the control socket: submit (falling back
// to an atomic drop into incoming/ when no daemon answers), status, cancel, pause and resume.

#include <ostream>
#include <string>

#include "config/daemon_config.h"

namespace docpipe {

// Returns the exit code (0 ok; 1 invalid job, job failed or daemon error).
int cli_submit(const std::string& job_file, bool wait, const DaemonConfig& config,
               std::ostream& out, std::ostream& err);
int cli_status(const std::string& id, bool json, const DaemonConfig& config, std::ostream& out,
               std::ostream& err);
int cli_cancel(const std::string& id, const DaemonConfig& config, std::ostream& out,
               std::ostream& err);
// `docpipe retry [--id NEW_ID] [--wait] JOB_ID`: a new job of the failed and cancelled
// documents of a finished job. 0 submitted (with --wait: and it succeeded); 1 an error (or, with
// --wait, the retry did not succeed); 3 nothing to retry.
int cli_retry(const std::string& id, const std::string& new_id, bool wait,
              const DaemonConfig& config, std::ostream& out, std::ostream& err);
// `docpipe pause [--reason TEXT]` / `docpipe resume`: intake paused or resumed (operators only);
// prints the state it leaves.
int cli_pause(const std::string& reason, const DaemonConfig& config, std::ostream& out,
              std::ostream& err);
int cli_resume(const DaemonConfig& config, std::ostream& out, std::ostream& err);
// `docpipe which [--json] OUTPUT_FILE`: which job, input, input hash, chain and time produced the
// file (its lineage record). 0 found; 1 no record, no such file, not the caller's, or an error.
int cli_which(const std::string& output_file, bool json, const DaemonConfig& config,
              std::ostream& out, std::ostream& err);
// `docpipe plan [--json] JOB.json`: what the job would do, without queueing it. 0 nothing would
// change; 2 some documents would be processed; 1 an error (invalid job, no daemon).
int cli_plan(const std::string& job_file, bool json, const DaemonConfig& config, std::ostream& out,
             std::ostream& err);

}  // namespace docpipe
