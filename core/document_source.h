#pragma once
// Yields a job's documents one at a time, walking the input folder lazily so that memory does not
// grow with the size of the batch.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/job_spec.h"

namespace docpipe {

struct DocumentRef {
  std::string input_path;     // absolute
  std::string relative_path;  // relative to the input dir (or the file's name for `files`)
};

class DocumentSource {
 public:
  virtual ~DocumentSource() = default;
  // The next matching document, or nullopt when there are no more. Not thread-safe.
  virtual std::optional<DocumentRef> next() = 0;
  // Problems met so far that made the walk leave something out (an unreadable folder, a symlink
  // pointing out of the input folder), each "path: cause". Capped; the last line counts the rest.
  virtual std::vector<std::string> errors() const { return {}; }
};

// Walks input.dir (include/exclude globs, `**` crosses folders; symlinks are not followed out of
// the tree) or iterates input.files.
std::unique_ptr<DocumentSource> make_document_source(const JobSpec& job);

}  // namespace docpipe
