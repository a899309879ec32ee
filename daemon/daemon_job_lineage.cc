// DaemonJob::record_lineage: the job's outputs into the lineage store, from its manifest, at the
// job's finish (docs/design.md "Redo only what changed").
#include <fstream>
#include <variant>

#include "core/journal_record.h"
#include "daemon/daemon_job.h"

namespace docpipe {

namespace {

// Rows per transaction: a crash between two only leaves the rest for the resumed job's finish,
// and memory stays bounded whatever the job's size.
constexpr size_t kBatch = 5000;

}  // namespace

Status DaemonJob::record_lineage(const std::string& manifest_path) {
  if (lineage_ == nullptr) return ok();
  std::ifstream in(manifest_path, std::ios::binary);
  if (!in) return errno_error("lineage: read " + manifest_path, errno);
  const JobReport report = this->report();
  std::vector<LineageRow> rows;
  std::vector<LineageRow> refresh;
  bool chain_written = false;
  auto flush = [&]() -> Status {
    Status st = lineage_->upsert(rows);
    if (st) st = lineage_->refresh_input_stamps(refresh);
    rows.clear();
    refresh.clear();
    return st;
  };
  std::string line;
  while (std::getline(in, line)) {
    Result<JournalRecord> parsed = parse_journal_record(line);
    if (!parsed) continue;  // the manifest is the journal's own bytes: nothing to skip in practice
    const DocumentRecord* r = std::get_if<DocumentRecord>(&*parsed);
    if (r == nullptr || !r->input_stat.known()) continue;
    if (r->state == RecordState::kSucceeded && r->output_stat.known() && !r->sha256.empty() &&
        !r->input_sha256.empty()) {
      LineageRow row{.output = r->output,
                     .job_id = spec_.id,
                     .input = r->input,
                     .input_sha256 = r->input_sha256,
                     .input_stamp = r->input_stat,
                     .chain = spec_.chain_fingerprint,
                     .chain_json = chain_written ? std::string() : spec_.chain_canonical,
                     .finished_at_ms = report.finished_at_ms,
                     .output_sha256 = r->sha256,
                     .output_stamp = r->output_stat};
      chain_written = true;
      rows.push_back(std::move(row));
    } else if (r->state == RecordState::kSkipped && r->reason == "unchanged" &&
               !r->input_sha256.empty()) {
      // Found unchanged by its hash: the next check passes on the stat alone.
      refresh.push_back(LineageRow{.output = r->output,
                                   .input_sha256 = r->input_sha256,
                                   .input_stamp = r->input_stat,
                                   .chain = spec_.chain_fingerprint});
    }
    if (rows.size() + refresh.size() >= kBatch) {
      if (Status st = flush(); !st) return st;
    }
  }
  if (in.bad()) return errno_error("lineage: read " + manifest_path, errno);
  return flush();
}

}  // namespace docpipe
