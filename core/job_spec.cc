#include "core/job_spec.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "core/access_check.h"
#include "core/document_source.h"
#include "core/glob.h"
#include "core/json_util.h"
#include "core/path_util.h"
#include "core/safe_fs.h"

namespace docpipe {
namespace {

using nlohmann::json;

constexpr const char* kJobIdRule =
    "expected 1 to 128 characters from A-Z a-z 0-9 . _ - (and not \".\" or \"..\")";

// Builds a JobSpec from the parsed document, collecting every problem rather than the first.
class JobParser {
 public:
  JobParser(const JobParseOptions& options, FieldErrors& errors)
      : options_(options), errors_(errors) {}

  JobSpec parse(const json& doc) {
    JsonObjectReader top(doc, "", errors_);
    if (!top.is_object()) return std::move(spec_);
    parse_id(top);
    if (const json* v = top.require("input")) parse_input(*v);
    if (const json* v = top.require("output")) parse_output(*v);
    if (const json* v = top.get("transforms")) parse_transforms(*v);
    spec_.chain = std::make_shared<const TransformChain>(std::move(steps_));
    if (const json* v = top.get("limits")) parse_limits(*v);
    if (auto p = top.integer("priority", -100, 100)) spec_.priority = static_cast<int>(*p);
    top.reject_unknown_keys();
    return std::move(spec_);
  }

 private:
  void parse_id(JsonObjectReader& top) {
    if (const json* v = top.get("id")) {
      std::optional<std::string> id = read_string(*v, "id", true, errors_);
      if (!id) return;
      if (!is_valid_job_id(*id)) {
        top.error("id", "invalid job id " + describe_json(*v) + ": " + kJobIdRule);
        return;
      }
      spec_.id = std::move(*id);
      return;
    }
    if (!is_valid_job_id(options_.default_id)) {
      top.error("id", "no id given and the file name gives " + describe_json(options_.default_id) +
                          ", which is not a valid job id: " + kJobIdRule);
      return;
    }
    spec_.id = options_.default_id;
  }

  void parse_input(const json& value) {
    JsonObjectReader in(value, "input", errors_);
    if (!in.is_object()) return;
    const json* dir = in.get("dir");
    const json* files = in.get("files");
    if ((dir == nullptr) == (files == nullptr)) {
      errors_.push_back({"input", dir == nullptr
                                      ? "expected one of \"dir\" or \"files\", got neither"
                                      : "expected one of \"dir\" or \"files\", got both"});
    }
    if (dir != nullptr) {
      if (auto p = read_path(*dir, in.path_of("dir"))) spec_.input.dir = std::move(*p);
      spec_.input.include = {"**"};
      if (auto v = in.string_array("include", false)) {
        if (check_patterns(*v, in.path_of("include"))) spec_.input.include = std::move(*v);
      }
      if (auto v = in.string_array("exclude", true)) {
        if (check_patterns(*v, in.path_of("exclude"))) spec_.input.exclude = std::move(*v);
      }
    } else {
      for (const char* key : {"include", "exclude"}) {
        if (in.get(key) != nullptr) in.error(key, "only allowed with input.dir");
      }
    }
    if (files != nullptr) parse_files(*files, in.path_of("files"));
    in.reject_unknown_keys();
  }

  void parse_files(const json& value, const std::string& path) {
    if (!value.is_array() || value.empty()) {
      errors_.push_back({path, "expected a non-empty array of file paths, got " +
                                   (value.is_array() ? std::string("[]") : describe_json(value))});
      return;
    }
    // Outputs are named after the input's file name, so two inputs with one name would collide.
    std::unordered_map<std::string, size_t> first_with_name;
    for (size_t i = 0; i < value.size(); ++i) {
      std::string item_path = json_index_path(path, i);
      std::optional<std::string> file = read_path(value[i], item_path);
      if (!file) continue;
      std::string name(base_name(*file));
      if (name.empty()) {
        errors_.push_back({item_path, "not a file path: " + *file});
        continue;
      }
      auto [it, inserted] = first_with_name.emplace(name, i);
      if (!inserted) {
        errors_.push_back({item_path, "file name \"" + name + "\" is also used by " +
                                          json_index_path(path, it->second) +
                                          " (their outputs would collide)"});
        continue;
      }
      spec_.input.files.push_back(std::move(*file));
    }
  }

  void parse_output(const json& value) {
    JsonObjectReader out(value, "output", errors_);
    if (!out.is_object()) return;
    if (const json* dir = out.require("dir")) {
      if (auto p = read_path(*dir, out.path_of("dir"))) spec_.output.dir = std::move(*p);
    }
    if (auto suffix = out.string("suffix", true)) {
      if (suffix->find_first_of(std::string_view("/\0", 2)) != std::string::npos) {
        out.error("suffix", "must not contain '/' or a NUL byte");
      } else {
        spec_.output.suffix = std::move(*suffix);
      }
    }
    if (auto v = out.choice("if_exists", {"replace", "skip", "fail"})) {
      spec_.output.if_exists = *v == "skip"   ? IfExists::kSkip
                               : *v == "fail" ? IfExists::kFail
                                              : IfExists::kReplace;
    }
    out.reject_unknown_keys();
  }

  void parse_transforms(const json& value) {
    if (!value.is_array()) {
      errors_.push_back({"transforms", "expected array of objects, got " + describe_json(value)});
      return;
    }
    for (size_t i = 0; i < value.size(); ++i) {
      std::string path = json_index_path("transforms", i);
      JsonObjectReader step(value[i], path, errors_);
      if (!step.is_object()) continue;
      const json* op_value = step.require("op");
      if (op_value == nullptr) continue;
      std::optional<std::string> op = read_string(*op_value, step.path_of("op"), false, errors_);
      if (!op) continue;
      const TransformInfo* info = TransformRegistry::instance().find(*op);
      if (info == nullptr) {
        step.error("op", "unknown transform " + describe_json(*op_value) +
                             " (known: " + known_transforms() + ")");
        continue;
      }
      spec_.transform_ops.push_back(*op);
      json params = value[i];
      params.erase("op");
      configure(*info, params, path);
    }
  }

  void configure(const TransformInfo& info, const json& params, const std::string& path) {
    FieldErrors step_errors;
    std::shared_ptr<const TransformStep> step;
    try {
      static const TransformEnv kEmpty;
      step = info.configure(params, options_.env != nullptr ? *options_.env : kEmpty, step_errors);
    } catch (const std::exception& e) {
      // A transform's configure must not throw; if one does, it is still one job's error.
      step_errors.push_back({"", "transform \"" + info.op + "\" failed to configure: " + e.what()});
    }
    for (FieldError& e : step_errors) {
      errors_.push_back({json_child_path(path, e.path), std::move(e.reason)});
    }
    if (step == nullptr && step_errors.empty()) {
      errors_.push_back({path, "transform \"" + info.op + "\" refused its parameters"});
    }
    if (step != nullptr) steps_.push_back(std::move(step));
    if (!info.streaming) spec_.holds_whole_documents = true;
  }

  void parse_limits(const json& value) {
    JsonObjectReader limits(value, "limits", errors_);
    if (!limits.is_object()) return;
    constexpr int64_t kMax = JsonObjectReader::kMax;
    if (auto v = limits.integer("document_timeout_ms", 1, kMax)) {
      spec_.limits.document_timeout_ms = *v;
    }
    if (auto v = limits.integer("max_attempts", 1, 100)) {
      spec_.limits.max_attempts = static_cast<int>(*v);
    }
    if (auto v = limits.integer("max_failed_documents", 0, kMax)) {
      spec_.limits.max_failed_documents = *v;
    }
    limits.reject_unknown_keys();
  }

  // A path in the job: a non-empty string, resolved against the job's base folder and normalised.
  std::optional<std::string> read_path(const json& value, const std::string& path) {
    std::optional<std::string> raw = read_string(value, path, false, errors_);
    if (!raw) return std::nullopt;
    if (raw->find('\0') != std::string::npos) {
      errors_.push_back({path, "path contains a NUL byte"});
      return std::nullopt;
    }
    if (!is_absolute_path(*raw) && !is_absolute_path(options_.base_dir)) {
      errors_.push_back({path, "relative path " + describe_json(value) +
                                   " but the job has no base folder to resolve it against"});
      return std::nullopt;
    }
    return resolve_path(options_.base_dir, *raw);
  }

  // Patterns match file paths relative to input.dir; an empty or absolute pattern, or one ending
  // in '/', could never match a file, which is surely not what the job meant.
  bool check_patterns(const std::vector<std::string>& patterns, const std::string& path) {
    // Bounded so that matching stays cheap during the walk, whatever the patterns (core/glob.h).
    if (patterns.size() > kMaxGlobPatterns) {
      errors_.push_back({path, "at most " + std::to_string(kMaxGlobPatterns) +
                                   " glob patterns, got " + std::to_string(patterns.size())});
      return false;
    }
    bool ok = true;
    for (size_t i = 0; i < patterns.size(); ++i) {
      const std::string& p = patterns[i];
      std::string problem;
      if (p.size() > kMaxGlobPatternBytes) {
        problem = "glob pattern of " + std::to_string(p.size()) + " bytes, at most " +
                  std::to_string(kMaxGlobPatternBytes);
      } else if (p.empty()) {
        problem = "empty glob pattern";
      } else if (p.front() == '/') {
        problem = "glob pattern must be relative to input.dir";
      } else if (p.back() == '/') {
        problem = "glob pattern ends with '/' and can match no file (for a whole folder use \"" +
                  p + "**\")";
      }
      if (!problem.empty()) {
        errors_.push_back({json_index_path(path, i), std::move(problem)});
        ok = false;
      }
    }
    return ok;
  }

  static std::string known_transforms() {
    std::string names;
    for (const TransformInfo* info : TransformRegistry::instance().all()) {
      if (!names.empty()) names += ", ";
      names += info->op;
    }
    return names;
  }

  const JobParseOptions& options_;
  FieldErrors& errors_;
  JobSpec spec_;
  std::vector<std::shared_ptr<const TransformStep>> steps_;
};

// ---- File-system checks ----------------------------------------------------------------------

struct Roots {
  std::vector<std::string> real;  // resolved, for comparison
  std::string shown;              // as configured, for messages: "/srv/in, /data"
};

Roots resolve_roots(const std::vector<std::string>& roots) {
  Roots r;
  for (const std::string& root : roots) {
    std::string normal = normalize_path(root);
    std::string real = real_path(normal);
    r.real.push_back(real.empty() ? normal : real);
    if (!r.shown.empty()) r.shown += ", ";
    r.shown += root;
  }
  return r;
}

// The most specific allowed root holding `path`, or nullptr.
const std::string* root_holding(const std::string& path, const Roots& roots) {
  const std::string* best = nullptr;
  for (const std::string& root : roots.real) {
    if (path_is_within(path, root) && (best == nullptr || root.size() > best->size())) {
      best = &root;
    }
  }
  return best;
}

// "/x", or "/x (resolves to /y)" when symlinks lead elsewhere.
std::string shown_path(const std::string& path, const std::string& real) {
  return real == path ? path : path + " (resolves to " + real + ")";
}

std::string dump_patterns(const std::vector<std::string>& patterns) {
  return json(patterns).dump(-1, ' ', false, json::error_handler_t::replace);
}

// Fills job.input.root and real_dir, or reports why the input folder cannot be used.
bool check_input_dir(JobSpec& job, const Roots& roots, FieldErrors& errors) {
  const std::string& dir = job.input.dir;
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) {
    int err = errno;
    errors.push_back({"input.dir", err == ENOENT || err == ENOTDIR
                                       ? "no such directory: " + dir
                                       : "cannot access " + dir + ": " + std::strerror(err)});
    return false;
  }
  if (!S_ISDIR(st.st_mode)) {
    errors.push_back({"input.dir", "not a directory: " + dir});
    return false;
  }
  std::string real = real_path(dir);
  if (real.empty()) {
    errors.push_back({"input.dir", "cannot resolve " + dir + ": " + std::strerror(errno)});
    return false;
  }
  const std::string* root = root_holding(real, roots);
  if (root == nullptr) {
    errors.push_back({"input.dir", shown_path(dir, real) + " is outside the allowed input roots (" +
                                       roots.shown + ")"});
    return false;
  }
  if (const Credentials* who = restricted_submitter(job)) {
    Status st = check_path_access(real, *who, R_OK | X_OK, "read");
    if (!st) {
      errors.push_back({"input.dir", st.error().message});
      return false;
    }
  }
  job.input.root = *root;
  job.input.real_dir = std::move(real);
  return true;
}

size_t count_dir_documents(const JobSpec& job, FieldErrors& errors) {
  std::unique_ptr<DocumentSource> source = make_document_source(job, SourceUse::kCount);
  size_t count = 0;
  while (source->next()) ++count;
  std::vector<std::string> walk_errors = source->errors();
  for (std::string& e : walk_errors) errors.push_back({"input.dir", std::move(e)});
  if (const std::optional<Error>& fatal = source->fatal_error()) {
    // "input.dir: ..." already: the field goes in front once.
    std::string_view message = fatal->message;
    if (message.starts_with("input.dir: ")) message.remove_prefix(11);
    errors.push_back({"input.dir", std::string(message)});
    return count;
  }
  if (count == 0 && walk_errors.empty()) {
    std::string reason = "no documents match include " + dump_patterns(job.input.include);
    if (!job.input.exclude.empty()) reason += " exclude " + dump_patterns(job.input.exclude);
    errors.push_back({"input", reason + " in " + job.input.dir});
  }
  return count;
}

size_t check_input_files(JobSpec& job, const Roots& roots, FieldErrors& errors) {
  size_t count = 0;
  job.input.file_roots.assign(job.input.files.size(), "/");
  job.input.real_files.clear();
  for (size_t i = 0; i < job.input.files.size(); ++i) {
    const std::string& file = job.input.files[i];
    job.input.real_files.push_back(file);
    std::string path = json_index_path("input.files", i);
    struct stat st;
    if (::stat(file.c_str(), &st) != 0) {
      int err = errno;
      errors.push_back({path, err == ENOENT || err == ENOTDIR
                                  ? "no such file: " + file
                                  : "cannot access " + file + ": " + std::strerror(err)});
      continue;
    }
    if (!S_ISREG(st.st_mode)) {
      errors.push_back({path, "not a regular file: " + file});
      continue;
    }
    std::string real = real_path(file);
    const std::string* root = real.empty() ? nullptr : root_holding(real, roots);
    if (root == nullptr) {
      errors.push_back({path, shown_path(file, real.empty() ? file : real) +
                                  " is outside the allowed input roots (" + roots.shown + ")"});
      continue;
    }
    if (::access(file.c_str(), R_OK) != 0) {
      errors.push_back({path, "cannot read " + file + ": " + std::strerror(errno)});
      continue;
    }
    if (const Credentials* who = restricted_submitter(job)) {
      Status ok_path = check_path_access(std::string(parent_path(real)), *who, X_OK, "read");
      if (ok_path) {
        int fd = ::open(real.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || ::fstat(fd, &st) != 0 || !may_access(fd, st, *who, R_OK)) {
          ok_path = make_error(ErrorCode::kPermission, real + ": the submitter (uid " +
                                                           std::to_string(who->uid) +
                                                           ") may not read this file");
        }
        if (fd >= 0) ::close(fd);
      }
      if (!ok_path) {
        errors.push_back({path, ok_path.error().message});
        continue;
      }
    }
    job.input.file_roots[i] = *root;
    job.input.real_files[i] = std::move(real);
    ++count;
  }
  return count;
}

// Fills job.output.root and real_dir: output.dir as it will resolve (its nearest existing
// ancestor resolved, plus the part still to be created), or reports why it cannot be used.
bool check_output_dir(JobSpec& job, const Roots& roots, FieldErrors& errors) {
  const std::string& dir = job.output.dir;
  std::string existing = dir;
  struct stat st;
  while (::stat(existing.c_str(), &st) != 0) {
    int err = errno;
    if ((err != ENOENT && err != ENOTDIR) || existing == "/") {
      errors.push_back({"output.dir", "cannot access " + existing + ": " + std::strerror(err)});
      return false;
    }
    existing = std::string(parent_path(existing));
  }
  if (!S_ISDIR(st.st_mode)) {
    errors.push_back({"output.dir", existing == dir ? "not a directory: " + dir
                                                    : "cannot create " + dir + ": " + existing +
                                                          " is not a directory"});
    return false;
  }
  std::string existing_real = real_path(existing);
  if (existing_real.empty()) {
    errors.push_back({"output.dir", "cannot resolve " + existing + ": " + std::strerror(errno)});
    return false;
  }
  std::string real = existing_real;
  if (existing != dir) real = resolve_path(existing_real, path_below(dir, existing));
  const std::string* root = root_holding(real, roots);
  if (root == nullptr) {
    errors.push_back(
        {"output.dir",
         shown_path(dir, real) + " is outside the allowed output roots (" + roots.shown + ")"});
    return false;
  }
  if (::access(existing.c_str(), W_OK | X_OK) != 0) {
    errors.push_back({"output.dir", "cannot write to " + existing + ": " + std::strerror(errno)});
    return false;
  }
  if (const Credentials* who = restricted_submitter(job)) {
    // Where docpipe creates the rest of the path, or its files.
    Status st = check_path_access(existing_real, *who, W_OK | X_OK, "write");
    if (!st) {
      errors.push_back({"output.dir", st.error().message});
      return false;
    }
  }
  job.output.root = *root;
  job.output.real_dir = std::move(real);
  return true;
}

// A lazy walk would read back outputs written inside the input folder (a.md, a.md.html,
// a.md.html.html, ...) unless the globs keep that subfolder out of the walk.
void check_output_outside_walk(const JobSpec& job, const std::string& input_real,
                               const std::string& output_real, FieldErrors& errors) {
  if (!path_is_within(output_real, input_real)) return;
  std::string_view rel = path_below(output_real, input_real);
  if (rel.empty()) {
    errors.push_back({"output.dir", "is the input folder " + job.input.dir +
                                        "; outputs would be read back as inputs"});
    return;
  }
  for (const std::string& p : job.input.exclude) {
    if (glob_matches_all_under(p, rel)) return;
  }
  bool reachable = false;
  for (const std::string& p : job.input.include) {
    reachable = reachable || glob_may_match_under(p, rel);
  }
  if (!reachable) return;
  errors.push_back({"output.dir", job.output.dir + " is inside the input folder " + job.input.dir +
                                      " and the include patterns reach it; " +
                                      "add an exclude such as \"" + std::string(rel) +
                                      "/**\" or choose another folder"});
}

}  // namespace

const char* if_exists_name(IfExists v) {
  switch (v) {
    case IfExists::kReplace:
      return "replace";
    case IfExists::kSkip:
      return "skip";
    case IfExists::kFail:
      return "fail";
  }
  return "replace";
}

bool is_valid_job_id(std::string_view id) {
  if (id.empty() || id.size() > 128 || id == "." || id == "..") return false;
  for (char c : id) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::optional<JobSpec> parse_job(std::string_view text, const JobParseOptions& options,
                                 FieldErrors& errors) {
  const size_t errors_before = errors.size();
  json doc;
  if (!parse_json_text(text, doc, errors)) return std::nullopt;
  JobSpec spec = JobParser(options, errors).parse(doc);
  if (errors.size() != errors_before) return std::nullopt;
  return spec;
}

size_t check_job_inputs(JobSpec& job, const std::vector<std::string>& allowed_input_roots,
                        const std::vector<std::string>& allowed_output_roots, FieldErrors& errors) {
  Roots input_roots = resolve_roots(allowed_input_roots);
  Roots output_roots = resolve_roots(allowed_output_roots);
  size_t count = 0;
  bool input_ok = false;
  if (!job.input.dir.empty()) {
    input_ok = check_input_dir(job, input_roots, errors);
    if (input_ok) count = count_dir_documents(job, errors);
  } else {
    count = check_input_files(job, input_roots, errors);
  }
  const bool output_ok = check_output_dir(job, output_roots, errors);
  if (input_ok && output_ok) {
    check_output_outside_walk(job, job.input.real_dir, job.output.real_dir, errors);
  }
  return count;
}

std::string output_path_for(const JobSpec& job, std::string_view relative_path) {
  std::string out = job.output.dir;
  if (out.empty() || out.back() != '/') out += '/';
  out += relative_path;
  out += job.output.suffix;
  return out;
}

}  // namespace docpipe
