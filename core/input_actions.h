#pragma once
// What becomes of a job's inputs: `input.after_success` and `input.after_failure`, each "keep"
// (the default), "delete" or "move:<dir>" (docs/design.md "What happens to inputs (issue 14)").
//
// Parsing is pure (parse_input_action); check_input_actions does the validation that reads the
// file system (the move folder within the allowed roots, the submitter's write access to the
// input folders). InputActor carries an action out for one document, after its outcome is safe:
//
// - confined: the input's parent folder is opened beneath the job's input folder (or, for
//   input.files, beneath the file's allowed root) one component at a time without following
//   symlinks, and the file is removed or renamed relative to that descriptor (unlinkat,
//   renameat2 RENAME_NOREPLACE). A folder swapped for a symlink is refused, never followed.
// - the same file: the name must still be the regular file the reader opened (its device and
//   inode, recorded at read); anything else (replaced, swapped for a symlink) is left in place
//   and reported.
// - with the submitter's rights: write and search on the parent folder (and the sticky bit's
//   owner rule), and on every folder of the move target it passes or creates.
// - no clobbering: a move whose target name exists fails and keeps the input.
// - idempotent on resume (`resuming`): a delete whose file is gone is done, and so is a move
//   whose source is gone and whose target is the same file.

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/document_source.h"
#include "core/field_error.h"
#include "core/job_spec.h"
#include "core/result.h"

namespace docpipe {

const char* input_action_name(InputActionKind kind);  // "keep", "delete", "move"

// Parses one of "keep", "delete", "move:<absolute dir>" at `path` (e.g. "input.after_success");
// problems go to `errors`.
std::optional<InputAction> parse_input_action(const nlohmann::json& value, const std::string& path,
                                              FieldErrors& errors);

// The file-system half of validation, for a job whose input paths check_job_inputs has resolved
// (job.input.root / real_dir / file_roots / real_files filled): a move folder must be within an
// allowed input or output root and outside the input walk, and a restricted submitter must be
// allowed to write to the folders inputs are removed from (input.dir, or each file's folder).
// Fills each action's root and real_dir. Nothing is done for jobs that keep their inputs.
void check_input_actions(JobSpec& job, const std::vector<std::string>& allowed_input_roots,
                         const std::vector<std::string>& allowed_output_roots, FieldErrors& errors);

// Where an input is, as journalled: `path` beneath `base` ("" : the job's input folder; else the
// allowed root an input.files file lies beneath), its relative path below a move folder
// (`target`), and the identity of the file that was read.
struct InputLocation {
  std::string base;
  std::string path;
  std::string target;
  uint64_t dev = 0;
  uint64_t ino = 0;
  uint64_t size = 0;
  int64_t mtime_ns = 0;
};
InputLocation locate_input(const JobSpec& job, const DocumentRef& doc);

struct InputActionResult {
  bool done = false;
  std::string error;  // why not done: "what: why", naming the file
};

// Carries out input actions for one job. Thread-safe (writer threads of the job call it at once):
// the folders it holds are opened once, under a lock; each action uses descriptors of its own.
class InputActor {
 public:
  explicit InputActor(const JobSpec& job) : job_(job) {}  // `job` must outlive the actor

  // Applies `action` (after_success or after_failure of the job) to the input at `where`.
  // `resuming`: the action may have run before a crash, so a missing source is done when the
  // action's effect is there (delete: always; move: the target is the same file).
  InputActionResult apply(const InputAction& action, const std::string& input,
                          const InputLocation& where, bool resuming);

 private:
  Result<std::shared_ptr<const DirFd>> base(const std::string& base);
  Result<std::shared_ptr<const DirFd>> move_folder(const InputAction& action);

  const JobSpec& job_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<const DirFd>> bases_;         // by InputLocation::base
  std::map<std::string, std::shared_ptr<const DirFd>> move_folders_;  // by InputAction::dir
};

}  // namespace docpipe
