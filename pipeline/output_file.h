#pragma once
// OutputFile: an output document being written. The bytes go to a file in the target folder that
// has no name yet, and commit() gives it its name in one step: readers see the whole output or
// none of it. The SHA-256 is taken of the bytes as they are written, so it matches the file
// without reading it back.
//
// Two ways to write it (issue 12):
// - Anonymous (the default on tmpfs, ext2/3/4, XFS and Btrfs): an O_TMPFILE file in the target
//   folder, which commit() links into place (linkat; for kReplace over an existing file, linked
//   under a temp name and renamed over it). No name exists while it is written, so a crash or
//   kill -9 mid-write leaves nothing behind, and the folder's lock is taken once per output (the
//   link) instead of twice (create, rename): on tmpfs, 20,000 small outputs on 2 threads took
//   ~13 % less time. A watcher of the output folder sees a new output as IN_CREATE of a whole
//   file (no IN_MOVED_TO; its IN_CLOSE_WRITE names "#INODE", which never exists).
// - Named (OutputTarget::durable; other file systems, whose close() may flush; a process that
//   may not link such files): a temp file ".NAME.docpipe-tmp.RANDOM", closed, then renamed into
//   place. Durable outputs always go this way: an O_TMPFILE file fsynced before its link gets its
//   link count only at the link, and the folder's fsync that follows need not write that count
//   on a file system without a journal; a named temp file, fsynced and renamed, has no such gap.
//
// The target folder is opened beneath the job's open output folder, one component at a time
// without following symlinks, and the temp file is created, renamed, fsynced and removed relative
// to that descriptor: a sub-folder swapped for a symlink fails the document ("... is a symlink,
// refusing to write through it") and nothing is written outside.

#include <sys/stat.h>

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>

#include "core/credentials.h"
#include "core/job_spec.h"
#include "core/result.h"
#include "core/safe_fs.h"
#include "pipeline/sha256.h"

namespace docpipe {

class SharedFolders;

// Where an output goes: `rel` (its path below the output folder, with the suffix) beneath
// `folder`, the job's open output folder. A null folder means beneath "/", with rel the
// absolute final path without its leading slash (pipelines fed by hand in tests).
struct OutputTarget {
  const DirFd* folder = nullptr;
  std::string_view rel;
  const Credentials* who = nullptr;  // check the submitter's rights on folders (null: none)
  // Sub-folders already opened for the other outputs of a writer's batch (null: open its own).
  SharedFolders* shared = nullptr;
  // The caller fsyncs the output and its folder before reporting it (durability fsync): written
  // to a named temp file and renamed (see the top).
  bool durable = false;
};

// The sub-folders opened for the outputs of one writer batch, shared by the outputs that go to
// the same folder of the same job: one openat2 (and close) per folder per batch instead of one
// per output (issue 12). Each is opened exactly as an output's own folder is (beneath the job's
// output folder, no symlinks, the submitter's rights checked), so sharing changes only how long
// a descriptor is held: until the batch has been renamed, fsynced and reported, as a batch's
// folders were already held for their fsync. Must outlive the OutputFiles that borrow from it
// until they are committed or discarded.
class SharedFolders {
 public:
  // The folder `rel` beneath `base` opened for `who`, or null.
  const DirFd* find(const DirFd& base, const Credentials* who, std::string_view rel) const;
  const DirFd& add(const DirFd& base, const Credentials* who, std::string rel, DirFd folder);
  void clear() { entries_.clear(); }
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    const DirFd* base;
    const Credentials* who;
    std::string rel;
    DirFd folder;
  };
  std::deque<Entry> entries_;  // a deque: add() keeps earlier entries where they are
};

// How this process gives an anonymous (O_TMPFILE) file its name: linkat(AT_EMPTY_PATH), which
// needs CAP_DAC_READ_SEARCH before Linux 6.10; else linkat of /proc/self/fd/N; else not at all
// (outputs then go to named temp files). Learnt from the first anonymous file (see the .cc).
enum class TmpfileLink { kUnknown, kEmptyPath, kProcFd, kNone };
// Tests: forces the way (kUnknown: learn it again) and returns the one in use before.
TmpfileLink set_tmpfile_link_for_testing(TmpfileLink link);
// Tests: every link of an anonymous file fails with `link_errno`, every close of an output
// reports `close_errno` (0: none), and with `foreign_fs` every folder counts as on a file system
// where outputs are not anonymous.
void set_output_faults_for_testing(int link_errno, int close_errno, bool foreign_fs = false);
// Whether outputs in a folder of this file system type (statfs f_type) may be anonymous: local
// file systems with O_TMPFILE and no flush at close (tmpfs, ext2/3/4, XFS, Btrfs).
bool anonymous_outputs_on(long f_type);

class OutputFile {
 public:
  enum class Committed { kWritten, kTargetExists };

  OutputFile() = default;
  ~OutputFile() { discard(); }
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  // Creates the file for `final_path` (anonymous, or a named temp file made with O_EXCL; mode
  // 0644), creating missing folders below the output folder. `final_path` names the output in
  // messages.
  Status create(const std::string& final_path, const OutputTarget& target);
  // The same beneath "/" (unit tests).
  Status create(const std::string& final_path, bool durable = false);
  Status write(std::string_view data);
  Status sync();  // fsync the temp file

  // Gives the file its final name (link or rename) and closes it. kReplace replaces an existing
  // file; kSkip and kFail never do: they get kTargetExists and the file is dropped.
  // With `sync_folder`, the folder is fsynced after the rename so the new name survives a crash.
  Result<Committed> commit(IfExists mode, bool sync_folder);
  // commit() without the folder's fsync: when written, the folder stays open, for the caller to
  // fsync once for every output of a batch that went to it (sync_folder()) before any of them is
  // reported, and then release (release_folder()).
  Result<Committed> commit_keeping_folder(IfExists mode);
  int folder_fd() const { return dir_fd_; }
  Status sync_folder();  // fsync the folder kept by commit_keeping_folder
  void release_folder();

  // Closes and removes the temp file, if any. Safe to call at any time. A temp file that cannot
  // be removed (its folder turned read-only) is remembered in LeftoverTemps and removed later.
  void discard();

  bool open() const { return fd_ >= 0 || !temp_name_.empty(); }
  // Written to a file without a name (O_TMPFILE) rather than a named temp file.
  bool anonymous() const { return anonymous_; }
  // The temp file's path (folder path + name), for tests and messages; empty when anonymous.
  std::string temp_path() const;
  uint64_t bytes_written() const { return bytes_written_; }
  Result<std::string> sha256_hex() { return sha_.hex_digest(); }

  // Whether something (anything, even a symlink) exists at the target, looked up beneath the
  // output folder without following symlinks; a folder on the way that is missing or is a
  // symlink means no.
  static bool exists(const OutputTarget& target);
  // exists() that also gives the stat of what is there (not followed if a symlink).
  static bool stat_target(const OutputTarget& target, struct stat* st);
  // The stat of the temp file written so far (before commit: the rename or link keeps size,
  // mtime and inode), for the lineage store's pre-check.
  Status stat_written(struct stat* st) const;
  // After a commit that had to copy the file (its link was refused: see the .cc), the stat of
  // the copy that took its place; null otherwise.
  const struct stat* copied_stat() const { return copied_stat_ ? &*copied_stat_ : nullptr; }

 private:
  Status close_fd();
  Status write_all(const char* data, size_t size);
  bool create_anonymous();
  Status create_named();
  Result<Committed> rename_into_place(IfExists mode);
  Result<Committed> link_into_place(IfExists mode);
  Result<Committed> publish_by_copy(IfExists mode, int link_errno);

  std::string final_path_;
  // The folder the output goes to: the job's output folder (borrowed from the document, which
  // holds it until it settles), a sub-folder of the batch's SharedFolders (borrowed) or a
  // sub-folder opened for this output (owned_).
  const DirFd* dir_ = nullptr;
  int dir_fd_ = -1;  // dir_->fd()
  const std::string* dir_path_ = nullptr;
  DirFd owned_;
  std::string final_name_;
  std::string temp_name_;
  int fd_ = -1;
  bool anonymous_ = false;                 // fd_ is an O_TMPFILE file: no temp name until linked
  TmpfileLink link_ = TmpfileLink::kNone;  // how it is linked, learnt when it was made
  std::optional<struct stat> copied_stat_;
  uint64_t bytes_written_ = 0;
  Sha256 sha_;
};

}  // namespace docpipe
