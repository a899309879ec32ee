#pragma once
// What the pipeline needs from a job, and what it reports back per document. The daemon
// implements PipelineJob; the pipeline never touches the spool, reports or metrics of jobs.

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/document_source.h"
#include "core/job_spec.h"
#include "core/lineage_store.h"
#include "core/result.h"
#include "core/transform_chain.h"

namespace docpipe {

enum class DocumentState { kSucceeded, kFailed, kSkipped, kCancelled };
const char* document_state_name(DocumentState s);

struct DocumentOutcome {
  DocumentRef doc;
  std::string output_path;  // absolute
  DocumentState state = DocumentState::kSucceeded;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  std::string sha256;    // hex digest of the output as written; empty unless succeeded
  std::string metadata;  // what the transforms said about the document (JSON object), or empty
  int attempts = 1;
  double duration_seconds = 0;  // read start to write end
  std::string error;            // "what: why"; empty unless failed
  std::string input_sha256;     // of the input as read; empty when not read (skipped, failed early)
  std::string skip_reason;      // skipped: "unchanged" (if_exists "unchanged"), else empty
  // if_exists "unchanged" only: the input's stat when opened, the output's as written.
  FileStamp input_stat;
  FileStamp output_stat;
  // Failed with an error worth another attempt (is_transient: I/O, a busy resource) after the
  // job's attempts ran out; a cluster node hands such a document back with a delay instead.
  bool transient = false;
};

// An output the writer is about to rename into place (PipelineJob::document_committing).
struct PendingOutput {
  const DocumentRef& doc;
  const std::string& output_path;  // absolute
  const std::string& sha256;       // hex digest of the bytes about to appear there
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  int attempts = 1;
  const std::string& metadata;  // DocumentOutcome::metadata
};

class PipelineJob {
 public:
  virtual ~PipelineJob() = default;
  virtual const JobSpec& spec() const = 0;

  // The next document to process, or nullopt when there are no more. Called from a reader without
  // the scheduler's lock (a slow walk holds up only that reader), never concurrently for one job.
  virtual std::optional<DocumentRef> next_document() = 0;

  // Called once per document taken by next_document(), from a pipeline thread, in any order and
  // possibly concurrently for several documents of the job.
  virtual void document_finished(DocumentOutcome outcome) = 0;

  // False once the job takes no more documents of its own accord (too many failures, a journal it
  // cannot write): documents a reader walked ahead are then handed out as cancelled, not
  // processed. Called by a reader under the scheduler's lock: must not block.
  virtual bool taking_documents() const { return true; }

  // The lineage store an if_exists "unchanged" job checks its documents against (null: none,
  // every document is done). Any thread.
  virtual LineageStore* lineage() const { return nullptr; }

  // Several documents' outcomes at once, in the order given: a writer reports the documents of
  // one batch together (a daemon job records them in one journal write). Same contract as
  // document_finished() for each.
  virtual void documents_finished(std::vector<DocumentOutcome> outcomes) {
    for (DocumentOutcome& o : outcomes) document_finished(std::move(o));
  }

  // Called from a writer thread just before the document's output is renamed into place, so that
  // the job can record that the output about to appear is its own: a crash between the rename and
  // document_finished() would otherwise leave an output that resume cannot tell from someone
  // else's (if_exists skip/fail). An error fails the document without renaming anything.
  virtual Status document_committing(const PendingOutput& pending) {
    (void)pending;
    return ok();
  }

  // Called exactly once, from a pipeline thread, after the job has no more documents (or was
  // cancelled) and every document taken has been reported through document_finished().
  virtual void job_finished(bool cancelled) = 0;
};

}  // namespace docpipe
