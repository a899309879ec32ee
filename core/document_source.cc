#include "core/document_source.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <map>
#include <unordered_set>

#include "core/access_check.h"
#include "core/fs_util.h"
#include "core/glob.h"
#include "core/path_util.h"

namespace docpipe {
namespace {

std::string join(const std::string& dir, std::string_view rel) {
  std::string out = dir;
  if (out.empty() || out.back() != '/') out += '/';
  out += rel;
  return out;
}

// `path` relative to `root` (both absolute, normalised, path within root).
std::string below(const std::string& path, const std::string& root) {
  return std::string(path_below(path, root));
}

}  // namespace

// Opens the folder `dir` (absolute, within `root`) for the job: with a restricted submitter, by a
// walk from "/" that refuses symlinks and checks `want` on it and search on every folder above
// (the path is the real path found at validation, so a symlink on it now is a swap); else
// beneath the root with openat2. `create`: missing folders are made (the output folder).
Result<DirFd> open_job_folder(const std::string& root, const std::string& dir,
                              const Credentials* who, int want, bool create, const char* verb) {
  if (who != nullptr) {
    Result<DirFd> top = open_dir_path("/");
    if (!top) return top.error();
    if (dir == "/") return walk_dirs_beneath(*top, "", {who, false, want | X_OK, verb});
    return walk_dirs_beneath(*top, std::string_view(dir).substr(1), {who, create, want, verb});
  }
  Result<DirFd> base = open_dir_path(root);
  if (!base) return base.error();
  Result<DirFd> opened = open_dir_beneath(*base, below(dir, root), verb);
  if (opened || !create || opened.error().code != ErrorCode::kNotFound) return opened;
  WalkOptions opts;
  opts.create = true;
  opts.verb = verb;
  return walk_dirs_beneath(*base, below(dir, root), opts);
}

Result<DirFd> open_output_folder(const JobSpec& job) {
  const OutputSpec& out = job.output;
  const std::string root = out.root.empty() ? "/" : out.root;
  const std::string dir = out.real_dir.empty() ? out.dir : out.real_dir;
  return open_job_folder(root, dir, restricted_submitter(job), W_OK | X_OK, false, "clean");
}

namespace {

Error fatal(const char* field, const Error& e) {
  return Error{e.code, std::string(field) + ": " + e.message, e.sys_errno};
}

// The part every source shares: the output folder, opened when the source starts.
class SourceBase : public DocumentSource {
 protected:
  SourceBase(const JobSpec& job, SourceUse use)
      : job_(job), use_(use), who_(restricted_submitter(job)) {}

  // False (with fatal_ set) when the output folder cannot be opened.
  bool open_output() {
    if (use_ == SourceUse::kCount) return true;
    const OutputSpec& out = job_.output;
    const std::string root = out.root.empty() ? "/" : out.root;
    const std::string dir = out.real_dir.empty() ? out.dir : out.real_dir;
    Result<DirFd> opened = open_job_folder(root, dir, who_, W_OK | X_OK, true, "write");
    if (!opened) {
      fatal_ = fatal("output.dir", opened.error());
      return false;
    }
    output_ = std::make_shared<const DirFd>(std::move(*opened));
    return true;
  }

  const JobSpec& job_;
  const SourceUse use_;
  const Credentials* const who_;
  std::shared_ptr<const DirFd> output_;
};

// Walks input.dir depth first with one open DIR per level of the current branch, so memory
// depends on the depth of the tree, not on the number of files. Folders that no include can match
// below, or that an exclude covers entirely, are never opened. Symlinked folders are never
// entered; a symlinked file is taken only when its target stays inside the input folder, and then
// by its target's path beneath the input folder. Each document names the open folder it was found
// in, so what is read is what was walked.
class DirectoryWalker : public SourceBase {
 public:
  DirectoryWalker(const JobSpec& job, SourceUse use)
      : SourceBase(job, use), dir_(job.input.dir), globs_(job.input.include, job.input.exclude) {
    // input.only: the listed paths, and the folders on their way (no other folder is opened).
    for (const std::string& rel : job.input.only) {
      only_.insert(rel);
      for (std::string_view up = parent_path(rel); !up.empty() && up != "."; up = parent_path(up)) {
        if (!only_folders_.emplace(up).second) break;
      }
    }
  }

  ~DirectoryWalker() override {
    for (Frame& f : stack_) ::closedir(f.dir);
  }

  DirectoryWalker(const DirectoryWalker&) = delete;
  DirectoryWalker& operator=(const DirectoryWalker&) = delete;

  std::optional<DocumentRef> next() override {
    if (!started_) start();
    while (!stack_.empty() && !fatal_) {
      errno = 0;
      struct dirent* e = ::readdir(stack_.back().dir);
      if (e == nullptr) {
        if (errno != 0) walk_error(join(dir_, stack_.back().rel), "cannot read folder", errno);
        ::closedir(stack_.back().dir);
        stack_.pop_back();
        continue;
      }
      std::string_view name = e->d_name;
      if (name == "." || name == ".." || is_docpipe_temp_name(name)) continue;
      const std::string& parent = stack_.back().rel;
      std::string rel = parent.empty() ? std::string(name) : parent + "/" + std::string(name);

      unsigned char type = e->d_type;
      if (type == DT_UNKNOWN) type = type_of(e->d_name, rel);
      if (type == DT_DIR) {
        if (should_descend(rel)) descend(e->d_name, std::move(rel));
      } else if (type == DT_REG) {
        if (selected(rel)) {
          return DocumentRef{join(dir_, rel), std::move(rel), stack_.back().folder,
                             std::string(name), output_};
        }
      } else if (type == DT_LNK) {
        if (!selected(rel)) continue;
        if (std::optional<std::string> target = symlinked_file(e->d_name, rel)) {
          return DocumentRef{join(dir_, *target), std::move(rel), input_, std::move(*target),
                             output_};
        }
      }
      // Anything else (FIFO, socket, device, or gone meanwhile) is not a document.
    }
    return std::nullopt;
  }

  std::vector<std::string> errors() const override {
    std::vector<std::string> out = errors_;
    if (dropped_errors_ > 0) out.push_back("... and " + std::to_string(dropped_errors_) + " more");
    return out;
  }

 private:
  static constexpr size_t kMaxErrors = 100;

  struct Frame {
    DIR* dir;
    std::string rel;                      // "" for the input folder itself
    std::shared_ptr<const DirFd> folder;  // the same folder, for the documents found in it
  };

  void start() {
    started_ = true;
    const InputSpec& in = job_.input;
    const std::string root = in.root.empty() ? "/" : in.root;
    real_dir_ = in.real_dir.empty() ? dir_ : in.real_dir;
    Result<DirFd> opened = open_job_folder(root, real_dir_, who_, R_OK | X_OK, false, "read");
    if (!opened) {
      fatal_ = fatal("input.dir", opened.error());
      return;
    }
    input_ = std::make_shared<const DirFd>(std::move(*opened));
    if (!open_output()) return;
    push(input_, "");
  }

  // Lists `folder` through a DIR of its own (fdopendir takes the descriptor it is given).
  void push(std::shared_ptr<const DirFd> folder, std::string rel) {
    int fd = ::openat(folder->fd(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR* d = fd < 0 ? nullptr : ::fdopendir(fd);
    if (d == nullptr) {
      int err = errno;
      if (fd >= 0) ::close(fd);
      walk_error(join(dir_, rel), "cannot open folder", err);
      return;
    }
    stack_.push_back(Frame{d, std::move(rel), std::move(folder)});
  }

  void descend(const char* name, std::string rel) {
    // O_NOFOLLOW: a folder swapped for a symlink since readdir is still not followed.
    int fd =
        ::openat(::dirfd(stack_.back().dir), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      if (errno != ENOENT && errno != ELOOP && errno != ENOTDIR) {
        walk_error(join(dir_, rel), "cannot open folder", errno);
      }
      return;
    }
    auto folder = std::make_shared<const DirFd>(fd, join(dir_, rel));
    if (who_ != nullptr) {
      struct stat st;
      if (::fstat(fd, &st) != 0) {
        walk_error(folder->path(), "cannot stat", errno);
        return;
      }
      if (!may_access(fd, st, *who_, R_OK | X_OK)) {
        add_error(folder->path(), "the submitter (uid " + std::to_string(who_->uid) +
                                      ") may not list and search this folder, skipped");
        return;
      }
    }
    push(std::move(folder), std::move(rel));
  }

  unsigned char type_of(const char* name, const std::string& rel) {
    struct stat st;
    if (::fstatat(::dirfd(stack_.back().dir), name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno != ENOENT) walk_error(join(dir_, rel), "cannot stat", errno);
      return DT_UNKNOWN;
    }
    if (S_ISDIR(st.st_mode)) return DT_DIR;
    if (S_ISREG(st.st_mode)) return DT_REG;
    if (S_ISLNK(st.st_mode)) return DT_LNK;
    return DT_UNKNOWN;
  }

  // The target of a symlink to a regular file inside the input folder, as a path beneath it;
  // nullopt for anything else (a dangling link or a link to a folder is silently not a document,
  // a link out of the input folder is reported).
  std::optional<std::string> symlinked_file(const char* name, const std::string& rel) {
    const std::string link = join(dir_, rel);
    char buf[PATH_MAX];
    ssize_t n = ::readlinkat(::dirfd(stack_.back().dir), name, buf, sizeof buf - 1);
    if (n < 0) {
      if (errno != ENOENT) walk_error(link, "cannot resolve symlink", errno);
      return std::nullopt;
    }
    const std::string text(buf, static_cast<size_t>(n));
    // Absolute targets are judged against the input folder's real path, relative ones against
    // the link's own folder; either way the result must stay beneath the input folder.
    const std::string target = is_absolute_path(text)
                                   ? normalize_path(text)
                                   : resolve_path(join(real_dir_, stack_.back().rel), text);
    if (!path_is_within(target, real_dir_) || target == real_dir_) {
      // Only a link to a file is worth a report; one to a folder or nowhere is not a document.
      struct stat st;
      if (::fstatat(::dirfd(stack_.back().dir), name, &st, 0) != 0 || !S_ISREG(st.st_mode)) {
        return std::nullopt;
      }
      add_error(link, "symlink points outside the input folder (to " + target + "), skipped");
      return std::nullopt;
    }
    std::string target_rel = below(target, real_dir_);
    // Further links on the way are followed only while they stay beneath the input folder.
    Result<int> fd = open_beneath(*input_, target_rel, O_PATH, "read");
    if (!fd) {
      if (is_transient(fd.error())) {
        // Out of descriptors or memory, an I/O error: says nothing of the link; going on would
        // silently leave its document out.
        walk_error(link, "cannot follow symlink",
                   fd.error().sys_errno != 0 ? fd.error().sys_errno : EIO);
        return std::nullopt;
      }
      if (fd.error().code == ErrorCode::kPermission) {
        add_error(link, "symlink points outside the input folder (to " + target + "), skipped");
      }
      return std::nullopt;
    }
    struct stat st;
    const bool regular = ::fstat(*fd, &st) == 0 && S_ISREG(st.st_mode);
    ::close(*fd);
    if (!regular) return std::nullopt;
    return target_rel;
  }

  bool selected(const std::string& rel) const {
    return globs_.selected(rel) && (only_.empty() || only_.contains(rel));
  }
  bool should_descend(const std::string& rel) const {
    return globs_.should_descend(rel) && (only_.empty() || only_folders_.contains(rel));
  }

  // An error of the walk itself: one that says nothing about the input (out of descriptors or
  // memory, an I/O error) stops the job, since going on would silently leave documents out;
  // others (a folder the daemon may not read) leave that part out and are reported.
  void walk_error(const std::string& path, const std::string& what, int err) {
    Error e = errno_error(path + ": " + what, err);
    if (is_transient(e)) {
      fatal_ = Error{e.code, "input.dir: walk stopped at " + e.message, err};
      return;
    }
    add_error(path, what + ": " + std::strerror(err));
  }

  void add_error(const std::string& path, const std::string& message) {
    if (errors_.size() >= kMaxErrors) {
      ++dropped_errors_;
      return;
    }
    errors_.push_back(path + ": " + message);
  }

  const std::string dir_;                         // input.dir as the job names it
  const GlobSet globs_;                           // compiled once for the whole walk
  std::unordered_set<std::string> only_;          // input.only; empty: no such filter
  std::unordered_set<std::string> only_folders_;  // every folder above a path of only_
  std::string real_dir_;  // the folder opened: input.dir as resolved at validation
  std::shared_ptr<const DirFd> input_;
  std::vector<Frame> stack_;
  bool started_ = false;
  std::vector<std::string> errors_;
  size_t dropped_errors_ = 0;
};

// input.files: each file as given, opened beneath the root that holds it; outputs mirror the
// file's name.
class FileListSource : public SourceBase {
 public:
  FileListSource(const JobSpec& job, SourceUse use) : SourceBase(job, use) {}

  std::optional<DocumentRef> next() override {
    if (!started_) start();
    if (fatal_ || next_ >= job_.input.files.size()) return std::nullopt;
    const size_t i = next_++;
    const std::string& path = job_.input.files[i];
    const std::string& root = root_of(i);
    const std::string real =
        i < job_.input.real_files.size() ? job_.input.real_files[i] : normalize_path(path);
    return DocumentRef{path, std::string(base_name(path)), roots_[root], below(real, root),
                       output_};
  }

 private:
  const std::string& root_of(size_t i) const {
    static const std::string kSlash = "/";
    return i < job_.input.file_roots.size() ? job_.input.file_roots[i] : kSlash;
  }

  void start() {
    started_ = true;
    for (size_t i = 0; i < job_.input.files.size(); ++i) {
      const std::string& root = root_of(i);
      if (roots_.count(root) != 0) continue;
      if (who_ != nullptr) {
        // The folders above the root, once; those below it per file, as it is opened.
        Status st = check_path_access(root, *who_, X_OK, "read");
        if (!st) {
          fatal_ = fatal("input.files", st.error());
          return;
        }
      }
      Result<DirFd> opened = open_dir_path(root);
      if (!opened) {
        fatal_ = fatal("input.files", opened.error());
        return;
      }
      roots_[root] = std::make_shared<const DirFd>(std::move(*opened));
    }
    open_output();
  }

  std::map<std::string, std::shared_ptr<const DirFd>> roots_;
  size_t next_ = 0;
  bool started_ = false;
};

}  // namespace

std::unique_ptr<DocumentSource> make_document_source(const JobSpec& job, SourceUse use) {
  if (!job.input.dir.empty()) return std::make_unique<DirectoryWalker>(job, use);
  return std::make_unique<FileListSource>(job, use);
}

Result<OpenedInput> open_document(const DocumentRef& doc, const Credentials* who) {
  const int flags = O_RDONLY | O_NOCTTY | O_NONBLOCK;
  OpenedInput in;
  if (!doc.folder) {
    in.fd = ::open(doc.input_path.c_str(), flags | O_CLOEXEC);
    if (in.fd < 0) return errno_error("read " + doc.input_path, errno);
  } else if (who != nullptr && doc.open_path.find('/') != std::string::npos) {
    // Every folder on the way must let the submitter search it.
    const std::string_view parent = parent_path(doc.open_path);
    WalkOptions opts;
    opts.who = who;
    opts.verb = "read";
    Result<DirFd> dir = walk_dirs_beneath(*doc.folder, parent, opts);
    if (!dir) return dir.error();
    const std::string name(base_name(doc.open_path));
    in.fd = ::openat(dir->fd(), name.c_str(), flags | O_NOFOLLOW | O_CLOEXEC);
    if (in.fd < 0) {
      const std::string path = dir->child_path(name);
      if (errno == ELOOP) {
        return make_error(ErrorCode::kPermission,
                          path + " is a symlink, refusing to read through it");
      }
      return errno_error("read " + path, errno);
    }
  } else {
    Result<int> fd = open_beneath(*doc.folder, doc.open_path, flags, "read");
    if (!fd) return fd.error();
    in.fd = *fd;
  }
  if (::fstat(in.fd, &in.st) != 0) {
    int err = errno;
    ::close(in.fd);
    return errno_error("read " + doc.input_path, err);
  }
  if (who != nullptr && !may_access(in.fd, in.st, *who, R_OK)) {
    ::close(in.fd);
    return make_error(ErrorCode::kPermission, doc.input_path + ": the submitter (uid " +
                                                  std::to_string(who->uid) +
                                                  ") may not read this file");
  }
  return in;
}

PortableDocument to_portable(const JobSpec& job, const DocumentRef& doc) {
  PortableDocument p{doc.input_path, doc.relative_path, doc.open_path, {}};
  if (!doc.folder) return p;
  if (job.input.dir.empty()) {
    p.root = doc.folder->path();
    return p;
  }
  // The walk names the sub-folder it found the document in: the path from the input folder.
  const std::string top = job.input.real_dir.empty() ? job.input.dir : job.input.real_dir;
  const std::string_view sub = path_below(doc.folder->path(), top);
  if (!sub.empty() && sub != ".") p.open_path = std::string(sub) + "/" + doc.open_path;
  return p;
}

Result<std::shared_ptr<const JobFolders>> JobFolders::open(const JobSpec& job) {
  std::shared_ptr<JobFolders> folders(new JobFolders());
  const Credentials* who = restricted_submitter(job);
  const InputSpec& in = job.input;
  if (!in.dir.empty()) {
    const std::string root = in.root.empty() ? "/" : in.root;
    const std::string dir = in.real_dir.empty() ? in.dir : in.real_dir;
    Result<DirFd> opened = open_job_folder(root, dir, who, R_OK | X_OK, false, "read");
    if (!opened) return fatal("input.dir", opened.error());
    folders->input_ = std::make_shared<const DirFd>(std::move(*opened));
    folders->input_dir_ = in.dir;
  } else {
    for (size_t i = 0; i < in.files.size(); ++i) {
      const std::string root = i < in.file_roots.size() ? in.file_roots[i] : "/";
      if (folders->roots_.count(root) != 0) continue;
      if (who != nullptr) {
        Status st = check_path_access(root, *who, X_OK, "read");
        if (!st) return fatal("input.files", st.error());
      }
      Result<DirFd> opened = open_dir_path(root);
      if (!opened) return fatal("input.files", opened.error());
      folders->roots_[root] = std::make_shared<const DirFd>(std::move(*opened));
    }
  }
  const OutputSpec& out = job.output;
  const std::string root = out.root.empty() ? "/" : out.root;
  const std::string dir = out.real_dir.empty() ? out.dir : out.real_dir;
  Result<DirFd> opened = open_job_folder(root, dir, who, W_OK | X_OK, true, "write");
  if (!opened) return fatal("output.dir", opened.error());
  folders->output_ = std::make_shared<const DirFd>(std::move(*opened));
  return std::shared_ptr<const JobFolders>(std::move(folders));
}

Result<DocumentRef> JobFolders::document(const PortableDocument& p) const {
  // What is read is open_path beneath the job's folder; what is written is relative_path
  // beneath its output folder; input_path names it in reports. All three must agree.
  auto bad = [&](const std::string& why) {
    return make_error(ErrorCode::kInvalidArgument, "document " + p.input_path + ": " + why);
  };
  if (!is_plain_relative_path(p.open_path))
    return bad("bad path beneath its folder: " + p.open_path);
  if (!is_plain_relative_path(p.relative_path)) return bad("bad relative path: " + p.relative_path);
  std::shared_ptr<const DirFd> folder;
  if (input_) {
    if (p.input_path != input_dir_ + "/" + p.open_path &&
        p.input_path != input_dir_ + "/" + p.relative_path) {
      return bad("not beneath the job's input folder " + input_dir_);
    }
    folder = input_;
  } else {
    auto it = roots_.find(p.root);
    if (it == roots_.end()) return bad("its root is not one of the job's: " + p.root);
    if (p.relative_path != base_name(p.input_path)) return bad("its name is not its file's");
    folder = it->second;
  }
  return DocumentRef{p.input_path, p.relative_path, std::move(folder), p.open_path, output_};
}

}  // namespace docpipe
