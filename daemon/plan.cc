#include "daemon/plan.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "core/access_check.h"
#include "core/chain_fingerprint.h"
#include "core/document_source.h"
#include "core/lineage_check.h"
#include "core/path_util.h"
#include "core/safe_fs.h"
#include "pipeline/sha256.h"

namespace docpipe {

namespace {

// Whether `who` could tell by itself what an orphan row says: it may read the output file (as
// `docpipe which` asks), and search the folders down to where its input was (the nearest of
// them that still exists), so that the input's absence is something it could see too.
bool may_see_orphan(const LineageRow& r, const Credentials& who) {
  const std::string out_dir = real_path(std::string(parent_path(r.output)));
  if (out_dir.empty() || !check_path_access(out_dir, who, X_OK, "read")) return false;
  const std::string out = (out_dir == "/" ? "" : out_dir) + "/" + std::string(base_name(r.output));
  const int fd = ::open(out.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat st;
  const bool readable =
      ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && may_access(fd, st, who, R_OK);
  ::close(fd);
  if (!readable) return false;
  std::string dir(parent_path(r.input));
  std::string real;
  while (!dir.empty() && (real = real_path(dir)).empty()) {
    if (dir == "/") return false;
    dir = std::string(parent_path(dir));
  }
  return !real.empty() && check_path_access(real, who, X_OK, "search");
}

// The input's stat without opening it: beneath the folder the walk found it in.
bool stat_input(const DocumentRef& doc, struct stat* st) {
  if (doc.folder != nullptr) {
    return ::fstatat(doc.folder->fd(), doc.open_path.c_str(), st, AT_SYMLINK_NOFOLLOW) == 0;
  }
  return ::lstat(doc.input_path.c_str(), st) == 0;
}

// The input's SHA-256, read as the run would read it (the submitter's rights checked).
Result<std::string> hash_input(const JobSpec& spec, const DocumentRef& doc, Sha256& sha,
                               std::string& buffer) {
  Result<OpenedInput> opened = open_document(doc, restricted_submitter(spec));
  if (!opened) return opened.error();
  const int fd = opened->fd;
  Status st = sha.reset();
  buffer.resize(1 << 16);
  for (;;) {
    if (!st) break;
    ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      st = errno_error("read " + doc.input_path, errno);
      break;
    }
    if (n == 0) break;
    st = sha.update({buffer.data(), static_cast<size_t>(n)});
  }
  ::close(fd);
  if (!st) return st.error();
  return sha.hex_digest();
}

}  // namespace

nlohmann::json plan_job(const JobSpec& spec, LineageStore* store, size_t list,
                        const MeasuredThroughput& measured, PlanCounts* counts_out) {
  PlanCounts c;
  nlohmann::json documents = nlohmann::json::array();
  nlohmann::json warnings = nlohmann::json::array();
  bool store_failed = false;
  const bool unchanged_mode = spec.output.if_exists == IfExists::kUnchanged;
  Sha256 sha;
  std::string buffer;

  auto note = [&](const DocumentRef& doc, const std::string& output, const char* action,
                  const std::string& why) {
    if (documents.size() < list) {
      documents.push_back(
          {{"input", doc.input_path}, {"output", output}, {"action", action}, {"why", why}});
    }
  };

  // Outputs are looked up relative to the output folder (no walk of its whole path per
  // document); a folder that does not exist yet has no outputs.
  const int out_dir = ::open(spec.output.dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  std::unique_ptr<LineageStore::Reader> reader;
  if (store != nullptr && unchanged_mode) {
    Result<std::unique_ptr<LineageStore::Reader>> r = store->reader();
    if (r) {
      reader = std::move(*r);
    } else {
      store_failed = true;
      warnings.push_back("the lineage store cannot be read (" + r.error().message +
                         "): documents with an output are counted as would overwrite");
    }
  }
  uint64_t recorded_here = 0;  // rows found for this job's documents, naming their input

  std::unique_ptr<DocumentSource> source = make_document_source(spec, SourceUse::kCount);
  while (std::optional<DocumentRef> doc = source->next()) {
    ++c.total;
    const std::string output = output_path_for(spec, doc->relative_path);
    struct stat out_st;
    const bool exists =
        out_dir >= 0 &&
        ::fstatat(out_dir, output_relative_path(spec.output, doc->relative_path).c_str(), &out_st,
                  AT_SYMLINK_NOFOLLOW) == 0;
    struct stat in_st;
    const bool in_known = stat_input(*doc, &in_st);
    const uint64_t size = in_known ? static_cast<uint64_t>(in_st.st_size) : 0;
    auto to_do = [&](uint64_t& counter, const char* action, const std::string& why) {
      ++counter;
      c.bytes_to_process += size;
      note(*doc, output, action, why);
    };

    if (!unchanged_mode) {
      if (!exists) {
        to_do(c.new_documents, "new", "no output yet");
      } else if (spec.output.if_exists == IfExists::kReplace) {
        to_do(c.would_overwrite, "would overwrite", "if_exists replace");
      } else {
        ++c.exists;  // kept (skip) or failed (fail): nothing is written
      }
      continue;
    }

    std::optional<LineageRow> row;
    if (exists && reader && !store_failed) {
      Result<std::optional<LineageRow>> found = reader->lookup(output);
      if (found) {
        row = std::move(*found);
        if (row && row->input == doc->input_path) ++recorded_here;
      } else {
        store_failed = true;  // as the run: no record, so done
        warnings.push_back("the lineage store cannot be read (" + found.error().message +
                           "): documents with an output are counted as would overwrite");
      }
    }
    const char* why = "";
    switch (classify_output(exists, stamp_of(out_st), row, spec.chain_fingerprint, &why)) {
      case LineageClass::kNew:
        to_do(c.new_documents, "new", "no output yet");
        continue;
      case LineageClass::kWouldOverwrite:
        to_do(c.would_overwrite, "would overwrite", "the output exists but has no lineage record");
        continue;
      case LineageClass::kChanged:
        to_do(c.changed, "changed",
              std::string(why) == "chain" ? "the chain changed since the output was written"
                                          : "the output was changed since it was written");
        continue;
      case LineageClass::kCompareInput:
        break;
    }
    if (in_known && input_matches_by_stat(*row, stamp_of(in_st))) {
      ++c.unchanged;
      continue;
    }
    ++c.hashed;
    Result<std::string> digest = hash_input(spec, *doc, sha, buffer);
    if (digest && *digest == row->input_sha256) {
      ++c.unchanged;
      continue;
    }
    to_do(c.changed, "changed",
          digest ? "the input changed (its SHA-256 differs from the record)"
                 : "the input cannot be read to compare it: " + digest.error().message);
  }
  reader.reset();
  if (out_dir >= 0) ::close(out_dir);
  for (const std::string& w : source->errors()) warnings.push_back(w);
  if (source->fatal_error()) warnings.push_back(source->fatal_error()->message);

  // Orphans: recorded outputs beneath the job's output folder whose input is gone. When every
  // such row was met by the walk (its input exists: the walk found it), there are none, and
  // the rows need not be read again with a stat each.
  nlohmann::json orphans = nlohmann::json::array();
  bool scan = store != nullptr;
  if (scan && unchanged_mode && !store_failed) {
    Result<uint64_t> under = store->count_under(spec.output.dir);
    scan = !under || *under > recorded_here;
  }
  if (scan) {
    const Credentials* who = restricted_submitter(spec);
    Status scanned = store->for_each_under(spec.output.dir, [&](const LineageRow& r) {
      // Rows of other users' jobs may lie beneath a shared output folder: a restricted caller
      // learns of a row only what it could find out itself.
      if (who != nullptr && !may_see_orphan(r, *who)) return true;
      struct stat st;
      if (::lstat(r.input.c_str(), &st) != 0 && errno == ENOENT) {
        ++c.orphans;
        if (orphans.size() < list) {
          orphans.push_back({{"output", r.output}, {"input", r.input}, {"job", r.job_id}});
        }
      }
      return true;
    });
    if (!scanned) {
      warnings.push_back("orphans not counted: " + scanned.error().message);
    }
  }

  nlohmann::json estimate = nullptr;
  std::string basis;
  const uint64_t to_process = c.new_documents + c.changed + c.would_overwrite;
  if (measured.job_seconds > 0 && measured.bytes_in > 0 && c.bytes_to_process > 0) {
    const double rate = measured.bytes_in / measured.job_seconds;
    estimate = static_cast<double>(c.bytes_to_process) / rate;
    basis =
        "bytes to process / (bytes read / job seconds) of the jobs finished since the daemon "
        "started";
  } else if (measured.job_seconds > 0 && measured.documents > 0) {
    estimate = static_cast<double>(to_process) / (measured.documents / measured.job_seconds);
    basis =
        "documents to process / (documents / job seconds) of the jobs finished since the "
        "daemon started";
  } else {
    basis = "no job has finished since the daemon started: nothing measured yet";
  }

  if (counts_out != nullptr) *counts_out = c;
  return {{"id", spec.id},
          {"if_exists", if_exists_name(spec.output.if_exists)},
          {"chain", spec.chain_fingerprint},
          {"counts",
           {{"total", c.total},
            {"new", c.new_documents},
            {"changed", c.changed},
            {"unchanged", c.unchanged},
            {"would_overwrite", c.would_overwrite},
            {"exists", c.exists},
            {"orphans", c.orphans},
            {"hashed", c.hashed}}},
          {"bytes_to_process", c.bytes_to_process},
          {"estimate_seconds", estimate},
          {"estimate_basis", basis},
          {"documents", std::move(documents)},
          {"documents_truncated", to_process > list},
          {"orphans", std::move(orphans)},
          {"orphans_truncated", c.orphans > list},
          {"would_change", c.would_change()},
          {"warnings", std::move(warnings)}};
}

}  // namespace docpipe
