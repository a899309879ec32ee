#include "core/document_source.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

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

// Walks input.dir depth first with one open DIR per level of the current branch, so memory
// depends on the depth of the tree, not on the number of files. Folders that no include can match
// below, or that an exclude covers entirely, are never opened. Symlinked folders are never
// entered; a symlinked file is taken only when its target stays inside the input folder, and then
// by its resolved path, so what is read is what was checked.
class DirectoryWalker : public DocumentSource {
 public:
  explicit DirectoryWalker(const InputSpec& input)
      : dir_(input.dir), globs_(input.include, input.exclude) {}

  ~DirectoryWalker() override {
    for (Frame& f : stack_) ::closedir(f.dir);
  }

  DirectoryWalker(const DirectoryWalker&) = delete;
  DirectoryWalker& operator=(const DirectoryWalker&) = delete;

  std::optional<DocumentRef> next() override {
    if (!started_) start();
    while (!stack_.empty()) {
      errno = 0;
      struct dirent* e = ::readdir(stack_.back().dir);
      if (e == nullptr) {
        if (errno != 0) add_error(join(dir_, stack_.back().rel), "cannot read folder", errno);
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
        if (selected(rel)) return DocumentRef{join(dir_, rel), std::move(rel)};
      } else if (type == DT_LNK) {
        if (!selected(rel)) continue;
        if (std::optional<std::string> target = symlinked_file(rel)) {
          return DocumentRef{std::move(*target), std::move(rel)};
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
    std::string rel;  // "" for the input folder itself
  };

  void start() {
    started_ = true;
    int fd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
      add_error(dir_, "cannot open folder", errno);
      return;
    }
    push(fd, "");
    root_real_ = real_path(dir_);
  }

  void push(int fd, std::string rel) {
    DIR* d = ::fdopendir(fd);
    if (d == nullptr) {
      add_error(join(dir_, rel), "cannot open folder", errno);
      ::close(fd);
      return;
    }
    stack_.push_back(Frame{d, std::move(rel)});
  }

  void descend(const char* name, std::string rel) {
    // O_NOFOLLOW: a folder swapped for a symlink since readdir is still not followed.
    int fd =
        ::openat(::dirfd(stack_.back().dir), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      if (errno != ENOENT && errno != ELOOP && errno != ENOTDIR) {
        add_error(join(dir_, rel), "cannot open folder", errno);
      }
      return;
    }
    push(fd, std::move(rel));
  }

  unsigned char type_of(const char* name, const std::string& rel) {
    struct stat st;
    if (::fstatat(::dirfd(stack_.back().dir), name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno != ENOENT) add_error(join(dir_, rel), "cannot stat", errno);
      return DT_UNKNOWN;
    }
    if (S_ISDIR(st.st_mode)) return DT_DIR;
    if (S_ISREG(st.st_mode)) return DT_REG;
    if (S_ISLNK(st.st_mode)) return DT_LNK;
    return DT_UNKNOWN;
  }

  // The resolved path of a symlink to a regular file inside the input folder; nullopt for
  // anything else (a dangling link or a link to a folder is silently not a document, a link out
  // of the input folder is reported).
  std::optional<std::string> symlinked_file(const std::string& rel) {
    std::string link = join(dir_, rel);
    std::string target = real_path(link);
    if (target.empty()) {
      if (errno != ENOENT && errno != ENOTDIR) add_error(link, "cannot resolve symlink", errno);
      return std::nullopt;
    }
    struct stat st;
    if (::stat(target.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
    if (root_real_.empty() || !path_is_within(target, root_real_)) {
      add_error(link, "symlink points outside the input folder (to " + target + "), skipped");
      return std::nullopt;
    }
    return target;
  }

  bool selected(const std::string& rel) const { return globs_.selected(rel); }
  bool should_descend(const std::string& rel) const { return globs_.should_descend(rel); }

  void add_error(const std::string& path, const std::string& what, int err) {
    add_error(path, what + ": " + std::strerror(err));
  }

  void add_error(const std::string& path, const std::string& message) {
    if (errors_.size() >= kMaxErrors) {
      ++dropped_errors_;
      return;
    }
    errors_.push_back(path + ": " + message);
  }

  const std::string dir_;
  const GlobSet globs_;  // compiled once for the whole walk
  std::string root_real_;
  std::vector<Frame> stack_;
  bool started_ = false;
  std::vector<std::string> errors_;
  size_t dropped_errors_ = 0;
};

// input.files: each file as given; outputs mirror the file's name.
class FileListSource : public DocumentSource {
 public:
  explicit FileListSource(std::vector<std::string> files) : files_(std::move(files)) {}

  std::optional<DocumentRef> next() override {
    if (next_ >= files_.size()) return std::nullopt;
    const std::string& path = files_[next_++];
    return DocumentRef{path, std::string(base_name(path))};
  }

 private:
  std::vector<std::string> files_;
  size_t next_ = 0;
};

}  // namespace

std::unique_ptr<DocumentSource> make_document_source(const JobSpec& job) {
  if (!job.input.dir.empty()) return std::make_unique<DirectoryWalker>(job.input);
  return std::make_unique<FileListSource>(job.input.files);
}

}  // namespace docpipe
