#pragma once
// The job file (DESIGN.md "Job file"): parsed and validated into a JobSpec, with every problem
// reported by JSON path. Parsing is pure (no disk access); check_job_inputs() does the checks
// that need the file system (input dir exists, something matches, allowed roots).

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/credentials.h"
#include "core/field_error.h"
#include "core/notify_spec.h"
#include "core/transform_chain.h"

namespace docpipe {

// kUnchanged: skip a document whose output exists and whose input and chain match the lineage
// store's record of the run that wrote it (core/lineage_store.h); otherwise replace it.
enum class IfExists { kReplace, kSkip, kFail, kUnchanged };
const char* if_exists_name(IfExists v);
// skip and fail never replace an existing output (RENAME_NOREPLACE, intent records); replace and
// unchanged replace it whole.
inline bool keeps_existing_outputs(IfExists v) {
  return v == IfExists::kSkip || v == IfExists::kFail;
}

// input.after_success / input.after_failure (docs/design.md "What happens to inputs"): what
// becomes of a document's input once its outcome is safe. Parsed and checked in
// core/input_actions.cc.
enum class InputActionKind { kKeep, kDelete, kMove };
struct InputAction {
  InputActionKind kind = InputActionKind::kKeep;
  std::string dir;  // kMove: the folder moved into (absolute, normalised)
  // Filled by check_job_inputs: the allowed root holding dir, and dir as it resolves (its nearest
  // existing folder resolved, plus the part still to be created).
  std::string root;
  std::string real_dir;
  bool acts() const { return kind != InputActionKind::kKeep; }
};

struct InputSpec {
  std::string dir;                   // absolute, normalised; empty when `files` is used
  std::vector<std::string> include;  // globs relative to dir; default ["**"]
  std::vector<std::string> exclude;
  std::vector<std::string> files;  // absolute, normalised; empty when `dir` is used
  // input.only (written by `docpipe retry` alone, docs/design.md "Retry"): with `dir`, the
  // documents are those of the walk whose relative path is listed here (each a plain relative
  // path, no duplicates); empty: every document the globs select.
  std::vector<std::string> only;
  // Filled by check_job_inputs: the allowed input root holding dir (its real path), and dir as
  // resolved then; for `files`, each file's root and resolved path. The job opens its folder (or
  // each file) beneath that root when it starts. Empty (a spec not checked, as in unit tests):
  // beneath "/", by the paths above.
  std::string root;
  std::string real_dir;
  std::vector<std::string> file_roots;
  std::vector<std::string> real_files;
  InputAction after_success;  // documents that succeeded
  InputAction after_failure;  // documents that failed for good (not cancelled, not skipped)
  bool acts() const { return after_success.acts() || after_failure.acts(); }
};

struct OutputSpec {
  std::string dir;  // absolute, normalised
  std::string suffix;
  // output.extension: replaces the last extension of each output's file name ("x.pdf" -> "x.txt"
  // with ".txt"; "" removes it: "x.txt.gz" -> "x.txt"); a name without one gets it appended.
  // Applied before suffix. Unset: names are kept.
  std::optional<std::string> extension;
  IfExists if_exists = IfExists::kReplace;
  // Filled by check_job_inputs, as for InputSpec: the allowed output root holding dir, and dir as
  // it resolves (its nearest existing folder resolved, plus the part still to be created).
  std::string root;
  std::string real_dir;
};

struct JobLimits {
  int64_t document_timeout_ms = 30000;
  int max_attempts = 3;
  int64_t max_failed_documents = 0;
};

struct JobSpec {
  std::string id;
  InputSpec input;
  OutputSpec output;
  std::vector<std::string> transform_ops;       // the ops, in order, for reports and logs
  std::shared_ptr<const TransformChain> chain;  // never null; empty chain copies
  // Some step needs the whole document in memory (markdown.html, json.*): a document is charged
  // its whole size to the memory budget even when it is read in chunks.
  bool holds_whole_documents = false;
  JobLimits limits;
  int priority = 0;
  // Who the job acts for; its file access is checked against these credentials. nullopt: not
  // restricted (a root submitter, or a unit test of the pipeline).
  std::optional<Credentials> submitter;
  // "notify": who hears that the job ended (core/notify_spec.h); nullopt: nobody.
  std::optional<NotifySpec> notify;
  // "retry_of" (written by `docpipe retry` alone): the finished job whose failed and cancelled
  // documents this job does again; empty: none.
  std::string retry_of;
  // The chain fingerprint (core/chain_fingerprint.h): its canonical JSON and that text's SHA-256.
  std::string chain_canonical;
  std::string chain_fingerprint;
};

struct JobParseOptions {
  std::string default_id;             // the file name without .json
  std::string base_dir;               // relative paths in the job resolve against this (absolute)
  const TransformEnv* env = nullptr;  // the daemon's transform environment; null: empty
  // "retry_of" and "input.only" are the daemon's own (a retry it wrote): from anyone else they
  // are refused.
  bool daemon_written = false;
};

// Parses and validates a job file's text. On failure returns nullopt and fills `errors` with
// every problem found (malformed JSON gives one error with line and column).
std::optional<JobSpec> parse_job(std::string_view text, const JobParseOptions& options,
                                 FieldErrors& errors);

// Checks against the file system: input dir (or each file) exists and is readable, the input and
// output are under the allowed roots after resolving symlinks and "..", the submitter (if any)
// could read the input and write the output, and at least one document matches. Appends problems
// to `errors`; returns the number of matching documents. Fills the roots and real paths of
// job.input and job.output, which the job opens its folders beneath when it starts.
// (Defined in job_inputs.cc: the half of validation that reads the file system.)
// `count` false: the input folder is not walked (no count, no "no documents match"): a cluster
// node checking a job another node counted.
// `shortage`, when given, is set when a check could not be made because the daemon ran out of
// descriptors or memory (is_resource_shortage): not the job's fault, so the caller tries again
// later instead of rejecting the job. The reason is in `errors` as well.
size_t check_job_inputs(JobSpec& job, const std::vector<std::string>& allowed_input_roots,
                        const std::vector<std::string>& allowed_output_roots, FieldErrors& errors,
                        bool count = true, std::optional<Error>* shortage = nullptr);

// output.dir / relative_path, its file name renamed by output_name_for.
std::string output_path_for(const JobSpec& job, std::string_view relative_path);

// relative_path ("a/b.md") with its file name renamed by output_name_for ("a/b.txt").
std::string output_relative_path(const OutputSpec& output, std::string_view relative_path);

// The output file name of an input file name: output.extension applied (see OutputSpec), then
// output.suffix appended.
std::string output_name_for(const OutputSpec& output, std::string_view name);

// The last extension of a file name: from its last '.', unless that is the name's first byte or
// what is left would be "." or ".." ("a.tar.gz" -> ".gz"; "README", ".bashrc", "..gz" -> "").
std::string_view file_extension(std::string_view name);

bool is_valid_job_id(std::string_view id);

}  // namespace docpipe
