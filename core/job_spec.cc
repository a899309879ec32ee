#include "core/job_spec.h"

#include <nlohmann/json.hpp>
#include <unordered_map>

#include "core/chain_fingerprint.h"
#include "core/glob.h"
#include "core/input_actions.h"
#include "core/json_util.h"
#include "core/path_util.h"

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
    check_file_outputs();
    if (const json* v = top.get("transforms")) parse_transforms(*v);
    spec_.chain = std::make_shared<const TransformChain>(std::move(steps_));
    if (const json* v = top.get("limits")) parse_limits(*v);
    if (auto p = top.integer("priority", -100, 100)) spec_.priority = static_cast<int>(*p);
    if (const json* v = top.get("notify")) spec_.notify = parse_notify(*v, errors_);
    if (const json* v = top.get("retry_of")) parse_retry_of(*v);
    top.reject_unknown_keys();
    ChainFingerprint fp = fingerprint_chain(chain_steps_, spec_.output);
    spec_.chain_canonical = std::move(fp.canonical);
    spec_.chain_fingerprint = std::move(fp.sha256);
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

  // Only in a job the daemon wrote for `docpipe retry`: a producer naming another job here would
  // have its report claim a link the original never made.
  bool daemon_only(const std::string& path) {
    if (options_.daemon_written) return true;
    errors_.push_back({path, "is written by `docpipe retry` only; a job file cannot set it"});
    return false;
  }

  void parse_retry_of(const json& value) {
    if (!daemon_only("retry_of")) return;
    std::optional<std::string> id = read_string(value, "retry_of", false, errors_);
    if (!id) return;
    if (!is_valid_job_id(*id)) {
      errors_.push_back({"retry_of", "invalid job id " + describe_json(value) + ": " + kJobIdRule});
      return;
    }
    spec_.retry_of = std::move(*id);
  }

  void parse_only(const json& value, const std::string& path) {
    if (!daemon_only(path)) return;
    std::optional<std::vector<std::string>> list = read_string_array(value, path, false, errors_);
    if (!list) return;
    std::unordered_map<std::string_view, size_t> seen;
    for (size_t i = 0; i < list->size(); ++i) {
      const std::string& rel = (*list)[i];
      if (!is_plain_relative_path(rel) || rel.find('\0') != std::string::npos) {
        errors_.push_back({json_index_path(path, i),
                           "expected a path relative to input.dir, without \".\" or \"..\", got " +
                               describe_json(value[i])});
        return;
      }
      if (auto [it, inserted] = seen.emplace(rel, i); !inserted) {
        errors_.push_back({json_index_path(path, i),
                           "is listed twice (also " + json_index_path(path, it->second) + ")"});
        return;
      }
    }
    spec_.input.only = std::move(*list);
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
      if (const json* only = in.get("only")) parse_only(*only, in.path_of("only"));
    } else {
      for (const char* key : {"include", "exclude", "only"}) {
        if (in.get(key) != nullptr) in.error(key, "only allowed with input.dir");
      }
    }
    if (files != nullptr) parse_files(*files, in.path_of("files"));
    if (const json* v = in.get("after_success")) {
      if (auto a = parse_input_action(*v, in.path_of("after_success"), errors_)) {
        spec_.input.after_success = std::move(*a);
      }
    }
    if (const json* v = in.get("after_failure")) {
      if (auto a = parse_input_action(*v, in.path_of("after_failure"), errors_)) {
        spec_.input.after_failure = std::move(*a);
      }
    }
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

  // input.files with output.extension: inputs of different names may still share an output name
  // ("a.md" and "a.txt" both become "a.txt" with ".txt"). Same names were refused above.
  void check_file_outputs() {
    if (!spec_.output.extension || spec_.input.files.empty()) return;
    std::unordered_map<std::string, size_t> first_with_output;
    for (size_t i = 0; i < spec_.input.files.size(); ++i) {
      std::string name = output_name_for(spec_.output, base_name(spec_.input.files[i]));
      auto [it, inserted] = first_with_output.emplace(name, i);
      if (inserted) continue;
      errors_.push_back({json_index_path("input.files", i),
                         "its output name \"" + name + "\" (output.extension " +
                             describe_json(*spec_.output.extension) + ") is also that of " +
                             json_index_path("input.files", it->second) +
                             " (their outputs would collide)"});
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
      } else if (suffix->find("docpipe-tmp") != std::string::npos) {
        out.error("suffix",
                  "must not contain \"docpipe-tmp\": outputs would look like docpipe's "
                  "temp files, which are skipped and removed");
      } else {
        spec_.output.suffix = std::move(*suffix);
      }
    }
    if (auto ext = out.string("extension", true)) {
      if (ext->find_first_of(std::string_view("/\0", 2)) != std::string::npos) {
        out.error("extension", "must not contain '/' or a NUL byte");
      } else if (ext->find("docpipe-tmp") != std::string::npos) {
        out.error("extension",
                  "must not contain \"docpipe-tmp\": outputs would look like "
                  "docpipe's temp files, which are skipped and removed");
      } else if (!ext->empty() && ((*ext)[0] != '.' || *ext == "." || *ext == "..")) {
        out.error("extension",
                  "must start with '.' and name an extension, such as \".txt\" (or "
                  "be \"\" to remove the last extension), got " +
                      describe_json(*ext));
      } else {
        spec_.output.extension = std::move(*ext);
      }
    }
    if (auto v = out.choice("if_exists", {"replace", "skip", "fail", "unchanged"})) {
      spec_.output.if_exists = *v == "skip"        ? IfExists::kSkip
                               : *v == "fail"      ? IfExists::kFail
                               : *v == "unchanged" ? IfExists::kUnchanged
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
    // The job's report still lists it (transform_ops); the chain need not run it.
    if (step != nullptr && !step->passes_through()) {
      chain_steps_.push_back(describe_chain_step(info, params, *step));
      steps_.push_back(std::move(step));
    }
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
  json chain_steps_ = json::array();  // describe_chain_step() of each of steps_
};

}  // namespace

const char* if_exists_name(IfExists v) {
  switch (v) {
    case IfExists::kReplace:
      return "replace";
    case IfExists::kSkip:
      return "skip";
    case IfExists::kFail:
      return "fail";
    case IfExists::kUnchanged:
      return "unchanged";
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

std::string_view file_extension(std::string_view name) {
  const size_t dot = name.rfind('.');
  if (dot == std::string_view::npos || dot == 0) return {};
  // "..gz" and "...gz" have none: without it they would name a folder ("." and "..").
  const std::string_view stem = name.substr(0, dot);
  if (stem == "." || stem == "..") return {};
  return name.substr(dot);
}

std::string output_name_for(const OutputSpec& output, std::string_view name) {
  std::string out;
  if (output.extension) {
    name.remove_suffix(file_extension(name).size());
    out.reserve(name.size() + output.extension->size() + output.suffix.size());
    out += name;
    out += *output.extension;
  } else {
    out.reserve(name.size() + output.suffix.size());
    out += name;
  }
  out += output.suffix;
  return out;
}

std::string output_relative_path(const OutputSpec& output, std::string_view relative_path) {
  const std::string_view name = base_name(relative_path);
  std::string out(relative_path.substr(0, relative_path.size() - name.size()));
  out += output_name_for(output, name);
  return out;
}

std::string output_path_for(const JobSpec& job, std::string_view relative_path) {
  std::string out = job.output.dir;
  if (out.empty() || out.back() != '/') out += '/';
  if (!job.output.extension) {  // the usual case, without a copy of the name
    out += relative_path;
    out += job.output.suffix;
    return out;
  }
  out += output_relative_path(job.output, relative_path);
  return out;
}

}  // namespace docpipe
