#include "pipeline/unchanged_check.h"

#include <unistd.h>

#include <cerrno>

#include "core/chain_fingerprint.h"
#include "core/lineage_check.h"
#include "pipeline/stage_common.h"

namespace docpipe {

namespace {

void count(StageShared& s, UnchangedCheck r) {
  if (s.metrics != nullptr) s.metrics->unchanged_checks(r).Increment();
}

}  // namespace

void check_output_unchanged(StageShared& s, WorkItem& item) {
  item.recorded.reset();
  const JobSpec& spec = item.sched.job->spec();
  struct stat out_st;
  const bool exists = OutputFile::stat_target(output_target(item), &out_st);
  if (!exists) {
    count(s, UnchangedCheck::kNew);
    return;
  }
  LineageStore* store = item.sched.job->job().lineage();
  std::optional<LineageRow> row;
  if (store != nullptr) {
    Result<std::optional<LineageRow>> found = store->lookup(item.output_path);
    if (!found) {
      // The store cannot be read: the document is done, which is never wrong (its row is
      // written again at the job's finish).
      count(s, UnchangedCheck::kError);
      return;
    }
    row = std::move(*found);
  }
  const char* why = "";
  switch (classify_output(true, stamp_of(out_st), row, spec.chain_fingerprint, &why)) {
    case LineageClass::kNew:
    case LineageClass::kWouldOverwrite:
      count(s, UnchangedCheck::kNew);
      return;
    case LineageClass::kChanged:
      count(s, UnchangedCheck::kChanged);
      return;
    case LineageClass::kCompareInput:
      item.recorded = std::move(row);
      return;
  }
}

bool input_unchanged_by_stat(StageShared& s, WorkItem& item, const struct stat& st) {
  item.input_stat = stamp_of(st);
  if (!item.recorded || !input_matches_by_stat(*item.recorded, item.input_stat)) return false;
  count(s, UnchangedCheck::kPrecheck);
  item.skip_reason = "unchanged";
  item.recorded.reset();
  return true;
}

Result<bool> input_unchanged_by_hash(StageShared& s, WorkItem& item) {
  if (!item.streamed) {
    if (item.input_sha256.empty()) item.input_sha256 = sha256_hex(item.data);
  } else {
    // A large input is hashed by pread before it is streamed: reading it twice costs less than
    // transforming it again, and the offset stays at 0 for the stream.
    if (Status st = item.input_hash.reset(); !st) return st.error();
    item.scratch.resize(std::max<size_t>(s.options.chunk_bytes, 1));
    off_t offset = 0;
    for (;;) {
      ssize_t n = ::pread(item.input_fd, item.scratch.data(), item.scratch.size(), offset);
      if (n < 0) {
        if (errno == EINTR) continue;
        return errno_error("read " + item.sched.doc.input_path, errno);
      }
      if (n == 0) break;
      offset += n;
      if (Status st = item.input_hash.update({item.scratch.data(), static_cast<size_t>(n)}); !st)
        return st.error();
    }
    item.scratch.clear();
    Result<std::string> digest = item.input_hash.hex_digest();
    if (!digest) return digest.error();
    item.input_sha256 = std::move(*digest);
  }
  const bool same = item.input_sha256 == item.recorded->input_sha256;
  item.recorded.reset();
  count(s, same ? UnchangedCheck::kHashedSame : UnchangedCheck::kChanged);
  if (same) item.skip_reason = "unchanged";
  // A streamed input is hashed again as it streams (input_hash): the one above was for the check.
  if (item.streamed && !same) item.input_sha256.clear();
  return same;
}

}  // namespace docpipe
