#include "core/input_actions.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/access_check.h"
#include "core/json_util.h"
#include "core/path_util.h"
#include "core/safe_fs.h"

namespace docpipe {

namespace {

constexpr std::string_view kMovePrefix = "move:";

// The file read, unchanged: the same inode (a rename keeps it), and the size and mtime it had
// when read, so that a new file that got the freed inode number, or one written to since, is
// not taken for it.
bool same_file(const struct stat& st, const InputLocation& where) {
  return S_ISREG(st.st_mode) && st.st_dev == where.dev && st.st_ino == where.ino &&
         static_cast<uint64_t>(st.st_size) == where.size &&
         st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec == where.mtime_ns;
}

std::string uid_text(const Credentials& who) {
  return "the submitter (uid " + std::to_string(who.uid) + ")";
}

// The most specific root of `roots` (resolved) that holds `path`, or "".
std::string root_holding(const std::string& path, const std::vector<std::string>& roots) {
  std::string best;
  for (const std::string& configured : roots) {
    std::string normal = normalize_path(configured);
    std::string real = real_path(normal);
    if (real.empty()) real = normal;
    if (path_is_within(path, real) && (best.empty() || real.size() > best.size())) best = real;
  }
  return best;
}

std::string shown_roots(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  std::string out;
  for (const auto* list : {&a, &b}) {
    for (const std::string& r : *list) out += (out.empty() ? "" : ", ") + r;
  }
  return out;
}

// The move folder as it will resolve (its nearest existing folder resolved, plus the part still
// to be created), or a reason.
Result<std::string> resolve_move_dir(const std::string& dir) {
  std::string existing = dir;
  struct stat st;
  while (::stat(existing.c_str(), &st) != 0) {
    int err = errno;
    if ((err != ENOENT && err != ENOTDIR) || existing == "/") {
      return errno_error("cannot access " + existing, err);
    }
    existing = std::string(parent_path(existing));
  }
  if (!S_ISDIR(st.st_mode)) {
    return make_error(ErrorCode::kInvalidArgument,
                      existing == dir
                          ? "not a directory: " + dir
                          : "cannot create " + dir + ": " + existing + " is not a directory");
  }
  std::string real = real_path(existing);
  if (real.empty()) return errno_error("cannot resolve " + existing, errno);
  if (existing != dir) real = resolve_path(real, path_below(dir, existing));
  return real;
}

void check_move(JobSpec& job, InputAction& action, const char* field,
                const std::vector<std::string>& input_roots,
                const std::vector<std::string>& output_roots, FieldErrors& errors) {
  Result<std::string> real = resolve_move_dir(action.dir);
  if (!real) {
    errors.push_back({field, real.error().message});
    return;
  }
  std::string root = root_holding(*real, input_roots);
  std::string out_root = root_holding(*real, output_roots);
  if (out_root.size() > root.size()) root = out_root;
  if (root.empty()) {
    errors.push_back({field, action.dir +
                                 (*real == action.dir ? "" : " (resolves to " + *real + ")") +
                                 " is outside the allowed input and output roots (" +
                                 shown_roots(input_roots, output_roots) + ")"});
    return;
  }
  // Moved inputs must not be walked again (the walk is lazy) nor land on the input folder.
  const std::string& in = job.input.real_dir;
  if (!in.empty() && path_is_within(*real, in)) {
    errors.push_back(
        {field, action.dir + " is inside the input folder " + job.input.dir +
                    "; moved inputs would be walked again: choose a folder outside it"});
    return;
  }
  if (const Credentials* who = restricted_submitter(job)) {
    std::string existing = *real;
    while (::access(existing.c_str(), F_OK) != 0 && existing != "/") {
      existing = std::string(parent_path(existing));
    }
    Status st = check_path_access(existing, *who, W_OK | X_OK, "move into");
    if (!st) {
      errors.push_back({field, st.error().message});
      return;
    }
  }
  action.root = std::move(root);
  action.real_dir = std::move(*real);
}

// A restricted submitter must be able to remove names from `folder` (write and search), as the
// kernel would decide for them. The sticky bit's owner rule is checked per document.
void check_removable(const std::string& folder, const Credentials& who, const std::string& field,
                     FieldErrors& errors) {
  Status st = check_path_access(folder, who, W_OK | X_OK, "delete from");
  if (!st) {
    errors.push_back({field, st.error().message + " (input.after_success / after_failure "
                                                  "delete or move inputs from it)"});
  }
}

std::pair<std::string_view, std::string_view> split_path(std::string_view rel) {
  const size_t slash = rel.rfind('/');
  if (slash == std::string_view::npos) return {std::string_view(), rel};
  return {rel.substr(0, slash), rel.substr(slash + 1)};
}

bool plain_name(std::string_view name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string_view::npos;
}

// renameat2(RENAME_NOREPLACE), or link + unlink where the file system lacks it: never replaces
// a name that exists. Returns 0 or an errno.
int rename_noreplace(int from_dir, const char* from, int to_dir, const char* to) {
  if (::syscall(SYS_renameat2, from_dir, from, to_dir, to, RENAME_NOREPLACE) == 0) return 0;
  if (errno != EINVAL && errno != ENOSYS) return errno;
  if (::linkat(from_dir, from, to_dir, to, 0) != 0) return errno;
  if (::unlinkat(from_dir, from, 0) != 0) {
    const int err = errno;
    ::unlinkat(to_dir, to, 0);
    return err;
  }
  return 0;
}

}  // namespace

const char* input_action_name(InputActionKind kind) {
  switch (kind) {
    case InputActionKind::kKeep:
      return "keep";
    case InputActionKind::kDelete:
      return "delete";
    case InputActionKind::kMove:
      return "move";
  }
  return "keep";
}

std::optional<InputAction> parse_input_action(const nlohmann::json& value, const std::string& path,
                                              FieldErrors& errors) {
  constexpr const char* kExpected =
      "expected \"keep\", \"delete\" or \"move:<dir>\" (an absolute folder)";
  if (!value.is_string()) {
    errors.push_back({path, std::string(kExpected) + ", got " + describe_json(value)});
    return std::nullopt;
  }
  const std::string text = value.get<std::string>();
  InputAction action;
  if (text == "keep") return action;
  if (text == "delete") {
    action.kind = InputActionKind::kDelete;
    return action;
  }
  if (!std::string_view(text).starts_with(kMovePrefix)) {
    errors.push_back({path, std::string(kExpected) + ", got " + describe_json(value)});
    return std::nullopt;
  }
  const std::string dir = text.substr(kMovePrefix.size());
  if (dir.find('\0') != std::string::npos) {
    errors.push_back({path, "the move folder contains a NUL byte"});
    return std::nullopt;
  }
  if (!is_absolute_path(dir)) {
    errors.push_back({path, "the move folder must be an absolute path, got " +
                                describe_json(nlohmann::json(dir))});
    return std::nullopt;
  }
  action.kind = InputActionKind::kMove;
  action.dir = normalize_path(dir);
  return action;
}

void check_input_actions(JobSpec& job, const std::vector<std::string>& allowed_input_roots,
                         const std::vector<std::string>& allowed_output_roots,
                         FieldErrors& errors) {
  if (!job.input.acts()) return;
  struct Field {
    InputAction* action;
    const char* path;
  };
  for (Field f : {Field{&job.input.after_success, "input.after_success"},
                  Field{&job.input.after_failure, "input.after_failure"}}) {
    if (f.action->kind == InputActionKind::kMove) {
      check_move(job, *f.action, f.path, allowed_input_roots, allowed_output_roots, errors);
    }
  }
  const Credentials* who = restricted_submitter(job);
  if (who == nullptr) return;
  if (!job.input.real_dir.empty()) {
    check_removable(job.input.real_dir, *who, "input.dir", errors);
    return;
  }
  for (size_t i = 0; i < job.input.real_files.size(); ++i) {
    const std::string& real = job.input.real_files[i];
    if (::access(real.c_str(), F_OK) != 0) continue;  // not found: already reported
    check_removable(std::string(parent_path(real)), *who, json_index_path("input.files", i),
                    errors);
  }
}

InputLocation locate_input(const JobSpec& job, const DocumentRef& doc) {
  InputLocation where;
  where.dev = doc.input_dev;
  where.ino = doc.input_ino;
  where.size = doc.input_size;
  where.mtime_ns = doc.input_mtime_ns;
  where.target = doc.relative_path;
  if (!job.input.dir.empty()) {
    // The walk names a document by its path below input.dir (a symlinked file by its target's).
    where.path = std::string(path_below(doc.input_path, job.input.dir));
  } else {
    where.base = doc.folder ? doc.folder->path() : "/";
    where.path = doc.folder ? doc.open_path : doc.input_path.substr(1);
  }
  return where;
}

Result<std::shared_ptr<const DirFd>> InputActor::base(const std::string& base) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = bases_.find(base);
  if (it != bases_.end()) return it->second;
  Result<DirFd> opened = make_error(ErrorCode::kInternal, "no folder");
  if (base.empty()) {
    const InputSpec& in = job_.input;
    const std::string root = in.root.empty() ? "/" : in.root;
    const std::string dir = in.real_dir.empty() ? in.dir : in.real_dir;
    opened = open_job_folder(root, dir, restricted_submitter(job_), X_OK, false, "delete from");
  } else {
    // One of the job's allowed roots (from its journal or its source): a trusted path.
    bool known = job_.input.file_roots.empty() && base == "/";
    for (const std::string& r : job_.input.file_roots) known = known || r == base;
    if (!known) {
      return make_error(ErrorCode::kPermission, base + " is not a root of this job's input files");
    }
    opened = open_dir_path(base);
  }
  if (!opened) return opened.error();
  auto held = std::make_shared<const DirFd>(std::move(*opened));
  bases_.emplace(base, held);
  return held;
}

Result<std::shared_ptr<const DirFd>> InputActor::move_folder(const InputAction& action) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = move_folders_.find(action.dir);
  if (it != move_folders_.end()) return it->second;
  const std::string root = action.root.empty() ? "/" : action.root;
  const std::string dir = action.real_dir.empty() ? action.dir : action.real_dir;
  Result<DirFd> opened =
      open_job_folder(root, dir, restricted_submitter(job_), W_OK | X_OK, true, "move into");
  if (!opened) return opened.error();
  auto held = std::make_shared<const DirFd>(std::move(*opened));
  move_folders_.emplace(action.dir, held);
  return held;
}

InputActionResult InputActor::apply(const InputAction& action, const std::string& input,
                                    const InputLocation& where, bool resuming) {
  auto failed = [](std::string why) { return InputActionResult{false, std::move(why)}; };
  const bool moving = action.kind == InputActionKind::kMove;
  const char* verb = moving ? "move" : "delete";
  if (!action.acts()) return failed("nothing to do");
  const auto [parent_rel, name_view] = split_path(where.path);
  const std::string name(name_view);
  if (!plain_name(name) || where.path.empty() || where.path.front() == '/') {
    return failed(std::string(verb) + " " + input + ": bad path beneath its folder: " + where.path);
  }
  if (where.dev == 0 && where.ino == 0) {
    return failed(std::string(verb) + " " + input +
                  ": the input was never opened (it failed before it was read), so it cannot be "
                  "told from a file put there since; left in place");
  }
  Result<std::shared_ptr<const DirFd>> top = base(where.base);
  if (!top) return failed(std::string(verb) + " " + input + ": " + top.error().message);
  const Credentials* who = restricted_submitter(job_);
  WalkOptions opts;
  opts.who = who;
  opts.want_last = W_OK | X_OK;
  opts.verb = moving ? "move from" : "delete from";
  Result<DirFd> parent = walk_dirs_beneath(**top, parent_rel, opts);
  if (!parent) return failed(std::string(verb) + " " + input + ": " + parent.error().message);

  // Where a move goes (only looked up, not created, until the source is known to be there).
  std::string target_rel;
  std::string target_name;
  if (moving) {
    const auto [tp, tn] = split_path(where.target);
    target_rel = std::string(tp);
    target_name = std::string(tn);
    if (!plain_name(target_name)) {
      return failed("move " + input + ": bad relative path " + where.target);
    }
  }
  auto open_target = [&](bool create) -> Result<DirFd> {
    Result<std::shared_ptr<const DirFd>> folder = move_folder(action);
    if (!folder) return folder.error();
    WalkOptions t;
    t.who = who;
    t.create = create;
    t.want_last = W_OK | X_OK;
    t.verb = "move into";
    return walk_dirs_beneath(**folder, target_rel, t);
  };

  struct stat st;
  if (::fstatat(parent->fd(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    const int err = errno;
    if (err != ENOENT) return failed(errno_error(std::string(verb) + " " + input, err).message);
    if (resuming && !moving) return InputActionResult{true, {}};  // deleted before the crash
    if (resuming) {
      // Moved before the crash: the target is the very file (a rename keeps the inode).
      Result<DirFd> target = open_target(false);
      struct stat tst;
      if (target && ::fstatat(target->fd(), target_name.c_str(), &tst, AT_SYMLINK_NOFOLLOW) == 0 &&
          same_file(tst, where)) {
        return InputActionResult{true, {}};
      }
    }
    return failed(std::string(verb) + " " + input +
                  ": the input is gone (removed by someone else)");
  }
  if (!same_file(st, where)) {
    return failed(std::string(verb) + " " + input +
                  ": not the file that was read (replaced, changed, or swapped for a " +
                  (S_ISLNK(st.st_mode) ? "symlink" : "different file") + " since); left in place");
  }
  if (who != nullptr) {
    // The sticky bit (/tmp-like folders): only the file's or the folder's owner may remove it.
    struct stat pst;
    if (::fstat(parent->fd(), &pst) != 0) {
      return failed(errno_error(std::string(verb) + " " + input, errno).message);
    }
    if ((pst.st_mode & S_ISVTX) != 0 && st.st_uid != who->uid && pst.st_uid != who->uid) {
      return failed(std::string(verb) + " " + input + ": " + uid_text(*who) +
                    " owns neither the file nor its folder, which has the sticky bit; left "
                    "in place");
    }
  }
  if (!moving) {
    if (::unlinkat(parent->fd(), name.c_str(), 0) != 0) {
      return failed(errno_error("delete " + input, errno).message);
    }
    return InputActionResult{true, {}};
  }
  Result<DirFd> target = open_target(true);
  if (!target) return failed("move " + input + ": " + target.error().message);
  const int err = rename_noreplace(parent->fd(), name.c_str(), target->fd(), target_name.c_str());
  if (err == 0) return InputActionResult{true, {}};
  const std::string to = target->child_path(target_name);
  if (err == EEXIST) {
    return failed("move " + input + " to " + to +
                  ": a file of that name exists there; not "
                  "replaced, the input is left in place");
  }
  if (err == EXDEV) {
    return failed("move " + input + " to " + to +
                  ": on another file system (docpipe only renames); left in place");
  }
  return failed(errno_error("move " + input + " to " + to, err).message);
}

}  // namespace docpipe
