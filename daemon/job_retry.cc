#include "daemon/job_retry.h"

#include <openssl/evp.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "core/document_source.h"
#include "core/fs_util.h"
#include "core/job_spec.h"
#include "core/time_util.h"
#include "daemon/intake.h"

namespace docpipe {

namespace {

// A document by the first 128 bits of its path's SHA-256: 16 bytes a document in a sorted
// vector, whatever the length of its paths.
using PathKey = std::array<uint64_t, 2>;

// `path` as the manifest holds it: nlohmann's dump replaces invalid UTF-8 by U+FFFD.
std::string as_recorded(const std::string& path) {
  if (std::all_of(path.begin(), path.end(), [](char c) { return (c & 0x80) == 0; })) return path;
  return nlohmann::json::parse(
             nlohmann::json(path).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))
      .get<std::string>();
}

PathKey key_of(std::string_view path) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  PathKey key{};
  if (EVP_Digest(path.data(), path.size(), digest, &len, EVP_sha256(), nullptr) == 1 &&
      len >= sizeof key) {
    std::memcpy(key.data(), digest, sizeof key);
  }
  return key;
}

// What the original's manifest records: the documents done (succeeded or skipped) and failed,
// each by its last record (a document done again after a restart is listed once, but a
// hand-edited manifest may not be).
struct ManifestOutcomes {
  std::vector<PathKey> done;    // sorted
  std::vector<PathKey> failed;  // sorted, none of them in `done`
  bool is_done(const PathKey& k) const { return std::binary_search(done.begin(), done.end(), k); }
  bool is_failed(const PathKey& k) const {
    return std::binary_search(failed.begin(), failed.end(), k);
  }
};

// `field`: "output" (input.dir jobs) or "input" (input.files jobs).
Result<ManifestOutcomes> read_outcomes(std::FILE* f, const std::string& path, const char* field) {
  struct Entry {
    PathKey key;
    uint64_t seq;
    bool done;
  };
  std::vector<Entry> entries;
  ManifestOutcomes out;
  if (f == nullptr) return out;
  char* line = nullptr;
  size_t cap = 0;
  ssize_t n;
  std::optional<Error> bad;
  while ((n = ::getline(&line, &cap, f)) > 0) {
    nlohmann::json record =
        nlohmann::json::parse(std::string_view(line, static_cast<size_t>(n)), nullptr, false);
    const auto it = record.is_object() ? record.find(field) : record.end();
    if (!record.is_object() || it == record.end() || !it->is_string()) {
      bad = make_error(
          ErrorCode::kCorruptInput,
          path + ": line " + std::to_string(entries.size() + 1) + " is not a document record");
      break;
    }
    const std::string state = record.value("state", std::string());
    entries.push_back({key_of(it->get_ref<const std::string&>()), entries.size(),
                       state == "succeeded" || state == "skipped"});
  }
  const bool read_error = std::ferror(f) != 0;
  std::free(line);
  if (bad) return *bad;
  if (read_error) return make_error(ErrorCode::kIo, "read " + path + ": I/O error");
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.key != b.key ? a.key < b.key : a.seq < b.seq;
  });
  for (size_t i = 0; i < entries.size(); ++i) {
    if (i + 1 < entries.size() && entries[i + 1].key == entries[i].key) continue;  // not its last
    (entries[i].done ? out.done : out.failed).push_back(entries[i].key);
  }
  return out;
}

std::string nothing_left(const std::string& id, bool had_failures, uint64_t gone,
                         uint64_t new_since) {
  std::string why = "job \"" + id + "\": nothing to retry: every document it found now ";
  why += "succeeded or was skipped";
  if (had_failures && gone > 0) {
    why += ", and its " + std::to_string(gone) +
           " failed document(s) are not in its input now (moved, deleted or unreadable)";
  }
  if (new_since > 0) {
    why += "; " + std::to_string(new_since) +
           " document(s) came into its input after it ran: submit the job again for them";
  }
  return why;
}

constexpr size_t kMaxRetryWarnings = 100;

Error cannot(const std::string& id, const std::string& why) {
  return make_error(ErrorCode::kInvalidArgument, "cannot retry job \"" + id + "\": " + why);
}

uint64_t count_of(const nlohmann::json& report, const char* key) {
  const auto counts = report.find("counts");
  if (counts == report.end() || !counts->is_object()) return 0;
  const auto v = counts->find(key);
  return v != counts->end() && v->is_number_unsigned() ? v->get<uint64_t>() : 0;
}

// Whether the original finished every document it matched: then a document its manifest does
// not name came into the input since, and is not the original's to retry.
bool finished_every_document(const nlohmann::json& report) {
  const uint64_t ended =
      count_of(report, "succeeded") + count_of(report, "failed") + count_of(report, "skipped");
  const auto seen = report.find("all_documents_seen");
  const auto state = report.find("state");
  return (seen == report.end() || !seen->is_boolean() || seen->get<bool>()) &&
         (state == report.end() || !state->is_string() || *state != "cancelled") &&
         count_of(report, "cancelled") == 0 && ended >= count_of(report, "total");
}

}  // namespace

Result<FinishedJob> load_finished_job(const Spool& spool, const std::string& id) {
  for (const std::string& dir : {spool.done(), spool.failed()}) {
    const std::string base = dir + "/" + id;
    auto text = read_file(base + ".json");
    if (!text) {
      if (text.error().code == ErrorCode::kNotFound) continue;
      return text.error();
    }
    FinishedJob job;
    job.id = id;
    job.job_text = std::move(*text);
    job.manifest_path = base + ".manifest.jsonl";
    if (std::FILE* f = std::fopen(job.manifest_path.c_str(), "re")) {
      job.manifest = std::shared_ptr<std::FILE>(f, &std::fclose);
    } else if (errno != ENOENT) {
      return errno_error("read " + job.manifest_path, errno);
    }
    auto report = read_file(base + ".report.json");
    if (!report) return report.error();
    job.report = nlohmann::json::parse(*report, nullptr, false);
    if (!job.report.is_object()) {
      return make_error(ErrorCode::kCorruptInput, base + ".report.json: not a JSON object");
    }
    return job;
  }
  return make_error(ErrorCode::kNotFound, "no finished job \"" + id + "\"");
}

std::string latest_retry(const nlohmann::json& report) {
  auto it = report.find("retried_by");
  if (it == report.end() || !it->is_array() || it->empty() || !it->back().is_string()) return {};
  return it->back().get<std::string>();
}

bool named_as_retry(const nlohmann::json& report, const std::string& id) {
  auto it = report.find("retried_by");
  if (it == report.end() || !it->is_array()) return false;
  return std::any_of(it->begin(), it->end(),
                     [&](const nlohmann::json& v) { return v.is_string() && v == id; });
}

std::string next_retry_id(const std::string& id,
                          const std::function<bool(const std::string&)>& taken) {
  std::string base = id;
  uint64_t n = 1;
  // "BASE-retry-N": the retry of a retry counts on rather than growing the name.
  if (size_t at = id.rfind("-retry-"); at != std::string::npos && at > 0) {
    const std::string digits = id.substr(at + 7);
    if (!digits.empty() && digits.size() <= 9 && digits[0] != '0' &&
        digits.find_first_not_of("0123456789") == std::string::npos) {
      base = id.substr(0, at);
      n = std::stoull(digits) + 1;
    }
  }
  for (;; ++n) {
    std::string candidate = base + "-retry-" + std::to_string(n);
    if (!is_valid_job_id(candidate)) return {};
    if (!taken(candidate)) return candidate;
  }
}

Result<RetryDraft> draft_retry(const FinishedJob& original, const std::string& new_id,
                               const DaemonConfig& config,
                               const std::optional<Credentials>& submitter) {
  nlohmann::ordered_json text = nlohmann::ordered_json::parse(original.job_text, nullptr, false);
  if (!text.is_object() || !text.contains("input") || !text["input"].is_object()) {
    return cannot(original.id, "its job file is damaged (no input object)");
  }
  nlohmann::ordered_json& input = text["input"];
  const bool by_files = input.contains("files");
  const uint64_t recorded = count_of(original.report, "succeeded") +
                            count_of(original.report, "failed") +
                            count_of(original.report, "skipped");
  if (!original.manifest && recorded > 0) {
    // Without it, what succeeded cannot be told from what did not: it would all be redone.
    return cannot(original.id, "its manifest (" + original.manifest_path +
                                   ") is missing, and its "
                                   "report counts " +
                                   std::to_string(recorded) +
                                   " document(s) done: submit the job again instead");
  }
  Result<ManifestOutcomes> outcomes =
      read_outcomes(original.manifest.get(), original.manifest_path, by_files ? "input" : "output");
  if (!outcomes) return cannot(original.id, outcomes.error().message);
  const bool complete = finished_every_document(original.report);

  RetryDraft draft;
  // input.files: the files left to do, and of those only the ones still there, before the job
  // is checked (a file that succeeded and was deleted since, by after_success or by hand, must
  // not make the whole retry invalid; validation would refuse a missing one).
  if (by_files) {
    if (!input["files"].is_array()) return cannot(original.id, "its input.files is damaged");
    nlohmann::ordered_json left = nlohmann::ordered_json::array();
    for (const auto& f : input["files"]) {
      if (!f.is_string()) return cannot(original.id, "its input.files is damaged");
      const std::string& path = f.get_ref<const std::string&>();
      const PathKey key = key_of(as_recorded(path));
      const bool failed = outcomes->is_failed(key);
      if (outcomes->is_done(key) || (complete && !failed)) continue;
      struct stat st;
      if (::stat(path.c_str(), &st) != 0 &&
          (errno == ENOENT || errno == ENOTDIR || errno == ELOOP)) {
        if (failed) {
          ++draft.gone;
          draft.warnings.push_back(path + ": failed, and not there now (" + std::strerror(errno) +
                                   "): left out");
        }
        continue;
      }
      left.push_back(path);
    }
    if (left.empty()) {
      return make_error(ErrorCode::kNotFound,
                        nothing_left(original.id, !outcomes->failed.empty(), draft.gone, 0));
    }
    input["files"] = std::move(left);
  }

  FieldErrors errors;
  std::optional<Error> shortage;
  // As the original was checked, by the config of now and the submitter's rights of now.
  const std::string checked = text.dump();
  std::optional<ValidatedJob> validated =
      validate_job_text(checked, original.id, "/", config, errors, submitter,
                        /*count_documents=*/false, &shortage, nullptr, /*daemon_written=*/true);
  if (shortage) return make_error(shortage->code, shortage_message(*shortage) + "; retry later");
  if (!validated) {
    return cannot(original.id, "its job is not valid now: " + join_field_errors(errors));
  }
  const JobSpec& spec = validated->spec;

  nlohmann::ordered_json documents = nlohmann::ordered_json::array();
  size_t list_bytes = 0;
  uint64_t failed_found = 0;
  uint64_t unnamable = 0;
  std::unique_ptr<DocumentSource> source = make_document_source(spec, SourceUse::kCount);
  while (std::optional<DocumentRef> doc = source->next()) {
    const PathKey key =
        key_of(as_recorded(by_files ? doc->input_path : output_path_for(spec, doc->relative_path)));
    if (outcomes->is_done(key)) continue;
    if (outcomes->is_failed(key)) {
      ++failed_found;
    } else if (complete) {
      ++draft.new_since;
      continue;
    } else {
      ++draft.cancelled;
    }
    const std::string& entry = by_files ? doc->input_path : doc->relative_path;
    if (as_recorded(entry) != entry) {
      // A job file is JSON text: a name that is not UTF-8 cannot be written into it as it is.
      if (unnamable++ == 0) {
        draft.warnings.push_back(as_recorded(doc->input_path) +
                                 ": its name is not valid UTF-8 and cannot be listed in a job "
                                 "file: left out (and any more such names)");
      }
      continue;
    }
    list_bytes += nlohmann::ordered_json(entry).dump().size() + 6;  // indent, comma, newline
    if (list_bytes > static_cast<size_t>(kMaxActiveJobFileBytes) / 2) {
      return cannot(original.id,
                    "too many documents to retry in one job (their list alone is "
                    "over " +
                        std::to_string(kMaxActiveJobFileBytes / 2) +
                        " bytes); submit the job again instead");
    }
    documents.push_back(entry);
  }
  if (source->fatal_error()) {
    return cannot(original.id,
                  "its inputs cannot be walked now: " + source->fatal_error()->message);
  }
  for (std::string& w : source->errors()) draft.warnings.push_back(std::move(w));
  draft.failed = failed_found;
  draft.documents = documents.size();
  if (unnamable > 0) {
    draft.warnings.push_back(std::to_string(unnamable) +
                             " document(s) left out: names that are not valid UTF-8");
  }
  if (!by_files) {
    const uint64_t failed_listed = outcomes->failed.size();
    draft.gone = failed_listed > failed_found ? failed_listed - failed_found : 0;
  }
  if (draft.documents == 0 && unnamable > 0) {
    return cannot(original.id, "the " + std::to_string(unnamable) +
                                   " document(s) left to do have names that are not valid UTF-8, "
                                   "which a job file cannot hold");
  }
  if (draft.documents == 0) {
    return make_error(ErrorCode::kNotFound, nothing_left(original.id, !outcomes->failed.empty(),
                                                         draft.gone, draft.new_since));
  }
  if (draft.warnings.size() > kMaxRetryWarnings) {
    const size_t more = draft.warnings.size() - kMaxRetryWarnings;
    draft.warnings.resize(kMaxRetryWarnings);
    draft.warnings.push_back("... and " + std::to_string(more) + " more");
  }
  // Not through `input`: new members may move text's (an ordered_json is a vector).
  text["input"][by_files ? "files" : "only"] = std::move(documents);
  text["id"] = new_id;
  text["retry_of"] = original.id;
  draft.text = text.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  if (draft.text.size() > static_cast<size_t>(kMaxActiveJobFileBytes)) {
    return cannot(original.id, "its retry's job file would be " +
                                   std::to_string(draft.text.size()) + " bytes, over " +
                                   std::to_string(kMaxActiveJobFileBytes) +
                                   ": submit the job again instead");
  }
  return draft;
}

Status link_retry(FinishedReports& reports, const std::string& original_id,
                  const std::string& retry_id, const std::string& retry_submitted_at) {
  return reports.update(original_id, [&](nlohmann::ordered_json& report) {
    const auto finished = report.find("finished_at");
    if (finished != report.end() && finished->is_string() &&
        finished->get_ref<const std::string&>() > retry_submitted_at) {
      return false;  // a later job of the same id, not the one retried
    }
    nlohmann::ordered_json& list = report["retried_by"];
    if (!list.is_array()) list = nlohmann::ordered_json::array();
    for (const auto& id : list) {
      if (id.is_string() && id.get_ref<const std::string&>() == retry_id) return false;
    }
    list.push_back(retry_id);
    return true;
  });
}

Credentials retry_credentials(const Credentials& recorded, const Credentials& current) {
  auto has_now = [&](gid_t g) { return g != static_cast<gid_t>(-1) && current.in_group(g); };
  Credentials who;
  who.uid = recorded.uid;
  who.gid = has_now(recorded.gid) ? recorded.gid : static_cast<gid_t>(-1);
  for (gid_t g : recorded.groups) {
    if (has_now(g)) who.groups.push_back(g);
  }
  return who;
}

}  // namespace docpipe
