#pragma once
// Who each job acts for, kept in the spool so that it survives a restart: submitters/ID.submitter
// (JSON: uid, gid, groups; or unrestricted), written before a socket job is admitted (and right
// after a dropped file is claimed, whose owner the claimed file keeps), and kept after the job
// finishes, where `status` of a finished job reads it. A folder of its own keeps the contents of
// active/, done/ and failed/ as DESIGN.md lists them.
//
// A record is trusted only if the daemon itself wrote it: owned by the daemon's user and
// writable by nobody else. Without a trusted record a job acts for the owner of active/ID.json
// (the producer for a claimed drop). start() makes submitters/, active/, done/, failed/ and
// rejected/ private to the daemon, so that nobody can plant or swap records or read other users'
// jobs there. Blocking file work: call from the threadpool, never from the loop thread.

#include <sys/types.h>

#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "core/credentials.h"
#include "core/result.h"
#include "core/spool.h"

namespace docpipe {

class SubmitterStore {
 public:
  SubmitterStore(const Spool& spool, bool durable) : spool_(spool), durable_(durable) {}

  // Before resuming: creates submitters/, tightens the spool folders' modes and removes records
  // whose job is nowhere in the spool (a crash between record and admit).
  void start() const;

  // A job from the control socket: records `submitter`, then Spool::admit. The record is written
  // first so that an admitted job always has one; a failed admit removes it again. Serialised
  // with record_claimed() so that two jobs racing for one id never leave the loser's record.
  Status admit(std::string_view id, std::string_view job_text,
               const std::optional<Credentials>& submitter);

  // A job file claimed from incoming/ (already in active/): the submitter is its owner, with
  // that user's groups. Records it (a failure is logged: the owner of active/ID.json, which the
  // claim keeps, says the same at resume) and returns it.
  std::optional<Credentials> adopt_claimed(std::string_view id, uid_t owner_uid);

  // Resume: the trusted record, else the owner of active/ID.json.
  Result<std::optional<Credentials>> load_active(std::string_view id) const;

  // The record of a finished job. nullopt: none, or not trusted.
  struct Record {
    std::optional<Credentials> submitter;  // nullopt: unrestricted (root)
  };
  std::optional<Record> load_finished(std::string_view id) const;

  static std::string encode(const std::optional<Credentials>& submitter);
  static std::optional<Record> decode(std::string_view text);

 private:
  std::string folder() const;
  std::string path_of(std::string_view id) const;
  bool job_exists(std::string_view id) const;  // ID.json in active/, done/ or failed/
  Status write(std::string_view id, const std::optional<Credentials>& submitter) const;
  std::optional<Record> load(const std::string& path) const;

  const Spool& spool_;
  const bool durable_;
  std::mutex mu_;  // admit() and adopt_claimed(): record and claim of one id happen as one
};

}  // namespace docpipe
