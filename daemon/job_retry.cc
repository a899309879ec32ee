#include "daemon/job_retry.h"

#include <openssl/evp.h>
#include <sys/stat.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <unordered_set>
#include <vector>

#include "core/document_source.h"
#include "core/fs_util.h"
#include "core/job_spec.h"
#include "daemon/intake.h"

namespace docpipe {

namespace {

// An input path by the first 128 bits of its SHA-256: a million inputs cost 16 MiB, whatever
// the length of their paths.
using PathKey = std::array<uint64_t, 2>;
struct PathKeyHash {
  size_t operator()(const PathKey& k) const { return static_cast<size_t>(k[0]); }
};
using PathKeySet = std::unordered_set<PathKey, PathKeyHash>;

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

// The inputs the original's manifest records as done (succeeded or skipped) and as failed.
struct ManifestOutcomes {
  PathKeySet done;
  PathKeySet failed;
};

Result<ManifestOutcomes> read_outcomes(const std::string& manifest_path) {
  ManifestOutcomes out;
  std::FILE* f = std::fopen(manifest_path.c_str(), "re");
  if (f == nullptr) {
    // No manifest: a job that ended before any document (a failed resume) has none; then
    // every document is to be done again.
    if (errno == ENOENT) return out;
    return errno_error("read " + manifest_path, errno);
  }
  char* line = nullptr;
  size_t cap = 0;
  ssize_t n;
  size_t number = 0;
  std::optional<Error> bad;
  while ((n = ::getline(&line, &cap, f)) > 0) {
    ++number;
    nlohmann::json record =
        nlohmann::json::parse(std::string_view(line, static_cast<size_t>(n)), nullptr, false);
    if (!record.is_object() || !record.contains("input") || !record["input"].is_string()) {
      bad =
          make_error(ErrorCode::kCorruptInput, manifest_path + ": line " + std::to_string(number) +
                                                   " is not a document record");
      break;
    }
    const std::string state = record.value("state", std::string());
    const PathKey key = key_of(record["input"].get_ref<const std::string&>());
    if (state == "succeeded" || state == "skipped") {
      out.failed.erase(key);
      out.done.insert(key);
    } else {
      out.done.erase(key);
      out.failed.insert(key);
    }
  }
  const bool read_error = std::ferror(f) != 0;
  std::free(line);
  std::fclose(f);
  if (bad) return *bad;
  if (read_error) return make_error(ErrorCode::kIo, "read " + manifest_path + ": I/O error");
  return out;
}

std::string nothing_left(const std::string& id, bool had_failures, uint64_t gone) {
  std::string why = "job \"" + id + "\": nothing to retry: every document it found now ";
  if (!had_failures || gone == 0) return why + "succeeded or was skipped";
  return why + "succeeded or was skipped, and its " + std::to_string(gone) +
         " failed document(s) are no longer in its input";
}

Error cannot(const std::string& id, const std::string& why) {
  return make_error(ErrorCode::kInvalidArgument, "cannot retry job \"" + id + "\": " + why);
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
  Result<ManifestOutcomes> outcomes = read_outcomes(original.manifest_path);
  if (!outcomes) return cannot(original.id, outcomes.error().message);
  nlohmann::ordered_json text = nlohmann::ordered_json::parse(original.job_text, nullptr, false);
  if (!text.is_object()) return cannot(original.id, "its job file is not a JSON object");

  // input.files: the files left to do, and of those only the ones still there, before the job
  // is checked (a file that succeeded and was deleted since, by after_success or by hand, must
  // not make the whole retry invalid).
  uint64_t files_gone = 0;
  const nlohmann::ordered_json* files =
      text.contains("input") && text["input"].is_object() && text["input"].contains("files")
          ? &text["input"]["files"]
          : nullptr;
  if (files != nullptr && files->is_array()) {
    nlohmann::ordered_json left = nlohmann::ordered_json::array();
    for (const auto& f : *files) {
      if (!f.is_string()) return cannot(original.id, "its job file's input.files is damaged");
      const std::string& path = f.get_ref<const std::string&>();
      const PathKey key = key_of(path);
      if (outcomes->done.contains(key)) continue;
      struct stat st;
      if (::lstat(path.c_str(), &st) != 0 && errno == ENOENT) {
        if (outcomes->failed.contains(key)) ++files_gone;
        continue;
      }
      left.push_back(path);
    }
    if (left.empty()) {
      return make_error(ErrorCode::kNotFound,
                        nothing_left(original.id, !outcomes->failed.empty(), files_gone));
    }
    text["input"]["files"] = std::move(left);
  }

  FieldErrors errors;
  std::optional<Error> shortage;
  // As the original was checked, by the config of now and the submitter's rights of now.
  const std::string checked = text.dump();
  std::optional<ValidatedJob> validated =
      validate_job_text(checked, original.id, "/", config, errors, submitter,
                        /*count_documents=*/false, &shortage, nullptr, /*daemon_written=*/true);
  if (shortage) return *shortage;
  if (!validated) {
    return cannot(original.id, "its job is not valid now: " + join_field_errors(errors));
  }
  const JobSpec& spec = validated->spec;

  RetryDraft draft;
  nlohmann::json documents = nlohmann::json::array();
  size_t bytes = 0;
  uint64_t failed_found = 0;
  std::unique_ptr<DocumentSource> source = make_document_source(spec, SourceUse::kCount);
  while (std::optional<DocumentRef> doc = source->next()) {
    const PathKey key = key_of(doc->input_path);
    if (outcomes->done.contains(key)) continue;
    if (outcomes->failed.contains(key)) {
      ++failed_found;
    } else {
      ++draft.cancelled;
    }
    const std::string& entry = spec.input.dir.empty() ? doc->input_path : doc->relative_path;
    bytes += entry.size() + 8;
    if (bytes > static_cast<size_t>(kMaxActiveJobFileBytes) / 2) {
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
  draft.failed = failed_found;
  draft.documents = failed_found + draft.cancelled;
  const uint64_t failed_listed = outcomes->failed.size();
  draft.gone = spec.input.dir.empty()
                   ? files_gone
                   : (failed_listed > failed_found ? failed_listed - failed_found : 0);
  if (draft.documents == 0) {
    return make_error(ErrorCode::kNotFound,
                      nothing_left(original.id, failed_listed > 0, draft.gone));
  }
  text["id"] = new_id;
  text["retry_of"] = original.id;
  if (spec.input.dir.empty()) {
    text["input"]["files"] = std::move(documents);
  } else {
    text["input"]["only"] = std::move(documents);
  }
  draft.text = text.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  return draft;
}

Status link_retry(FinishedReports& reports, const std::string& original_id,
                  const std::string& retry_id) {
  return reports.update(original_id, [&](nlohmann::ordered_json& report) {
    nlohmann::ordered_json& list = report["retried_by"];
    if (!list.is_array()) list = nlohmann::ordered_json::array();
    for (const auto& id : list) {
      if (id.is_string() && id.get_ref<const std::string&>() == retry_id) return;
    }
    list.push_back(retry_id);
  });
}

}  // namespace docpipe
