#pragma once
// Yields a job's documents one at a time, walking the input folder lazily so that memory does not
// grow with the size of the batch.
//
// When it starts (the first next(), i.e. when the job starts), the source opens the job's input
// folder (or the roots of its files) and its output folder beneath the allowed roots that
// check_job_inputs found, and holds them for the job's life: every document names an open folder
// and a path beneath it, never a path string to resolve again. A folder swapped for a symlink
// while the job waited or between two documents cannot lead the job out of its roots.

#include <sys/stat.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/job_spec.h"
#include "core/result.h"
#include "core/safe_fs.h"

namespace docpipe {

struct DocumentRef {
  std::string input_path;     // absolute, as the job names it (reports, journal)
  std::string relative_path;  // relative to the input dir (or the file's name for `files`)
  // Where it is read: `open_path` beneath `folder`, a folder the job opened (its input folder,
  // the sub-folder the walk found it in, or an allowed root). Null: input_path as given
  // (documents handed to a pipeline by hand in tests).
  std::shared_ptr<const DirFd> folder = nullptr;
  std::string open_path = {};
  // The job's output folder, opened beneath its allowed root; null: output.dir beneath "/".
  std::shared_ptr<const DirFd> output = nullptr;
  // The file the reader opened (st_dev, st_ino, and its size and mtime then, which tell a new file
  // that reused the inode number apart; 0 until then): an input action (core/input_actions.h)
  // acts only on this same, unchanged file.
  uint64_t input_dev = 0;
  uint64_t input_ino = 0;
  uint64_t input_size = 0;
  int64_t input_mtime_ns = 0;
};

// kCount (validation): the output folder is neither opened nor created.
enum class SourceUse { kRun, kCount };

class DocumentSource {
 public:
  virtual ~DocumentSource() = default;
  // The next matching document, or nullopt when there are no more. Not thread-safe.
  virtual std::optional<DocumentRef> next() = 0;
  // Problems met so far that made the walk leave something out (an unreadable folder, a symlink
  // pointing out of the input folder), each "path: cause". Capped; the last line counts the rest.
  virtual std::vector<std::string> errors() const { return {}; }
  // Why the job cannot go on, once next() returned nullopt because of it: its input or output
  // folder cannot be opened (vanished, swapped for a symlink that leads out, no descriptors
  // left), or the walk failed for a reason that is not the input's (EMFILE, EIO). The job must
  // fail with this rather than succeed with the documents found so far.
  const std::optional<Error>& fatal_error() const { return fatal_; }

 protected:
  std::optional<Error> fatal_;
};

// Walks input.dir (include/exclude globs, `**` crosses folders; symlinks are not followed out of
// the tree) or iterates input.files.
std::unique_ptr<DocumentSource> make_document_source(const JobSpec& job,
                                                     SourceUse use = SourceUse::kRun);

// Opens the folder `dir` (absolute, within `root`) for the job: with a restricted submitter
// (`who`), by a walk from "/" that refuses symlinks and checks `want` on it and search on every
// folder above; else beneath the root with openat2. `create`: missing folders are made. `verb`
// names the operation in messages.
Result<DirFd> open_job_folder(const std::string& root, const std::string& dir,
                              const Credentials* who, int want, bool create, const char* verb);

// Opens the job's existing output folder as a run of the job would (beneath its allowed root;
// for a restricted submitter, by a walk that refuses symlinks and needs write and search), for
// work the daemon does in it on the job's behalf. Creates nothing.
Result<DirFd> open_output_folder(const JobSpec& job);

struct OpenedInput {
  int fd = -1;
  struct stat st {};
};

// Opens a document for reading (O_NONBLOCK: a FIFO cannot hang the reader) beneath its folder,
// and with `who` (null: unrestricted) checks that the submitter could search the folders on the
// way and read the file. The caller owns the descriptor.
Result<OpenedInput> open_document(const DocumentRef& doc, const Credentials* who);

// The job's submitter when its access must be checked (set and not root), else null.
inline const Credentials* restricted_submitter(const JobSpec& job) {
  return job.submitter && !job.submitter->is_root() ? &*job.submitter : nullptr;
}

// A document as it crosses to another node of a cluster (docs/design.md "Several nodes"): what a
// node that opened the job's folders itself needs to find the same file beneath them. Paths are
// relative to folders every node opens beneath its own allowed roots, so nothing from the message
// is resolved against "/".
struct PortableDocument {
  std::string input_path;     // DocumentRef::input_path
  std::string relative_path;  // DocumentRef::relative_path
  std::string open_path;      // beneath the job's input folder (input.dir) or `root` (input.files)
  std::string root;           // input.files: the file's allowed root (one of input.file_roots)
};

// The portable form of a document `job`'s source yielded on this node.
PortableDocument to_portable(const JobSpec& job, const DocumentRef& doc);

// The folders of a job opened on a node that did not walk it, as a run of the job opens them:
// the input folder (or the roots of its files) and the output folder (created if missing)
// beneath their allowed roots, with the submitter's rights. Thread-safe once opened.
class JobFolders {
 public:
  static Result<std::shared_ptr<const JobFolders>> open(const JobSpec& job);

  // The document a PortableDocument names, beneath these folders. Refuses an open_path or
  // relative_path that is absolute or climbs (".."), an input_path that is not the input
  // folder's path joined with one of them, and a root that is not one of the job's.
  Result<DocumentRef> document(const PortableDocument& p) const;

 private:
  JobFolders() = default;
  std::shared_ptr<const DirFd> input_;  // input.dir
  std::string input_dir_;
  std::map<std::string, std::shared_ptr<const DirFd>> roots_;  // input.files, by root
  std::shared_ptr<const DirFd> output_;
};

}  // namespace docpipe
