#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <unordered_map>

#include "core/access_check.h"
#include "core/document_source.h"
#include "core/glob.h"
#include "core/input_actions.h"
#include "core/job_spec.h"
#include "core/json_util.h"
#include "core/path_util.h"
#include "core/safe_fs.h"

// check_job_inputs (declared in job_spec.h beside parse_job, which callers use together): the
// half of job validation that reads the file system. Parsing (job_spec.cc) stays pure.

namespace docpipe {
namespace {

using nlohmann::json;

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

// A check that failed for want of descriptors or memory is the daemon's trouble, not the job's
// (check_job_inputs' `shortage`).
void note_shortage(const Error& e, std::optional<Error>* shortage) {
  if (shortage != nullptr && is_resource_shortage(e.sys_errno)) *shortage = e;
}

// Fills job.input.root and real_dir, or reports why the input folder cannot be used.
bool check_input_dir(JobSpec& job, const Roots& roots, FieldErrors& errors,
                     std::optional<Error>* shortage) {
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
      note_shortage(st.error(), shortage);
      return false;
    }
  }
  job.input.root = *root;
  job.input.real_dir = std::move(real);
  return true;
}

// output.extension can give two inputs of one folder one output ("a.md" and "a.txt" both become
// "a.txt" with ".txt"); the second would overwrite the first. The walk is depth-first, so the
// output names of each folder on the current path are kept and a folder's are dropped once the
// walk has left it: memory follows the size of the folders, not of the job.
class OutputCollisions {
 public:
  explicit OutputCollisions(const OutputSpec& output) : output_(output) {}

  // The name of an earlier input of the same folder with the same output as `relative_path`.
  std::optional<std::string> check(std::string_view relative_path) {
    const std::string_view name = base_name(relative_path);
    const std::string_view folder = relative_path.substr(0, relative_path.size() - name.size());
    while (!path_.empty() && !folder.starts_with(path_.back().folder)) path_.pop_back();
    if (path_.empty() || path_.back().folder != folder) path_.push_back({std::string(folder), {}});
    auto [it, inserted] =
        path_.back().outputs.emplace(output_name_for(output_, name), std::string(name));
    if (inserted) return std::nullopt;
    return std::string(folder) + it->second;
  }

 private:
  struct Folder {
    std::string folder;                                    // "a/b/" ("" for the input folder)
    std::unordered_map<std::string, std::string> outputs;  // output name -> input name
  };
  const OutputSpec& output_;
  std::vector<Folder> path_;
};

constexpr size_t kMaxCollisionErrors = 10;

size_t count_dir_documents(const JobSpec& job, FieldErrors& errors,
                           std::optional<Error>* shortage) {
  std::unique_ptr<DocumentSource> source = make_document_source(job, SourceUse::kCount);
  size_t count = 0;
  std::optional<OutputCollisions> collisions;
  if (job.output.extension) collisions.emplace(job.output);
  size_t collided = 0;
  while (std::optional<DocumentRef> doc = source->next()) {
    ++count;
    if (!collisions) continue;
    std::optional<std::string> other = collisions->check(doc->relative_path);
    if (!other) continue;
    if (++collided > kMaxCollisionErrors) continue;
    errors.push_back({"output.extension",
                      "inputs " + *other + " and " + doc->relative_path +
                          " would both be written to " +
                          output_relative_path(job.output, doc->relative_path) +
                          " (below output.dir); exclude one of them, or keep the names and use "
                          "output.suffix"});
  }
  if (collided > kMaxCollisionErrors) {
    errors.push_back({"output.extension", "... and " +
                                              std::to_string(collided - kMaxCollisionErrors) +
                                              " more inputs whose outputs would collide"});
  }
  std::vector<std::string> walk_errors = source->errors();
  for (std::string& e : walk_errors) errors.push_back({"input.dir", std::move(e)});
  if (const std::optional<Error>& fatal = source->fatal_error()) {
    // "input.dir: ..." already: the field goes in front once.
    std::string_view message = fatal->message;
    if (message.starts_with("input.dir: ")) message.remove_prefix(11);
    errors.push_back({"input.dir", std::string(message)});
    if (shortage != nullptr && is_resource_shortage(fatal->sys_errno)) *shortage = *fatal;
    return count;
  }
  if (count == 0 && walk_errors.empty()) {
    std::string reason = "no documents match include " + dump_patterns(job.input.include);
    if (!job.input.exclude.empty()) reason += " exclude " + dump_patterns(job.input.exclude);
    errors.push_back({"input", reason + " in " + job.input.dir});
  }
  return count;
}

size_t check_input_files(JobSpec& job, const Roots& roots, FieldErrors& errors,
                         std::optional<Error>* shortage) {
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
        const int open_errno = errno;
        if (fd < 0 && is_resource_shortage(open_errno)) {
          Error e = errno_error("cannot check " + real, open_errno);
          errors.push_back({path, e.message});
          note_shortage(e, shortage);
          continue;
        }
        if (fd < 0 || ::fstat(fd, &st) != 0 || !may_access(fd, st, *who, R_OK)) {
          ok_path = make_error(ErrorCode::kPermission, real + ": the submitter (uid " +
                                                           std::to_string(who->uid) +
                                                           ") may not read this file");
        }
        if (fd >= 0) ::close(fd);
      }
      if (!ok_path) {
        errors.push_back({path, ok_path.error().message});
        note_shortage(ok_path.error(), shortage);
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
bool check_output_dir(JobSpec& job, const Roots& roots, FieldErrors& errors,
                      std::optional<Error>* shortage) {
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
      note_shortage(st.error(), shortage);
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

size_t check_job_inputs(JobSpec& job, const std::vector<std::string>& allowed_input_roots,
                        const std::vector<std::string>& allowed_output_roots, FieldErrors& errors,
                        bool count_documents, std::optional<Error>* shortage) {
  Roots input_roots = resolve_roots(allowed_input_roots);
  Roots output_roots = resolve_roots(allowed_output_roots);
  size_t count = 0;
  bool input_ok = false;
  if (!job.input.dir.empty()) {
    input_ok = check_input_dir(job, input_roots, errors, shortage);
    if (input_ok && count_documents) count = count_dir_documents(job, errors, shortage);
  } else {
    count = check_input_files(job, input_roots, errors, shortage);
  }
  const bool output_ok = check_output_dir(job, output_roots, errors, shortage);
  if (input_ok && output_ok) {
    check_output_outside_walk(job, job.input.real_dir, job.output.real_dir, errors);
  }
  if (input_ok || job.input.dir.empty()) {
    check_input_actions(job, allowed_input_roots, allowed_output_roots, errors);
  }
  return count;
}

}  // namespace docpipe
