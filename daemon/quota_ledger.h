#pragma once
// How many jobs each submitter has on this node, for "quotas.*.max_queued_jobs"
// (docs/design.md "Quotas per submitter (issue 14)"). A job is counted from the moment its
// submit reserves it (after validation, before its file is written to active/) until the job
// table forgets it (finished, cancelled, or failed as unresumable), so that a job that passes
// the cap never exists, however many submits are validated at once on the executor's threads.
//
// Jobs are counted by id: a job that an earlier run left in active/ (resumed at start, reopened
// after a passing failure, or taken over from another cluster node) is counted by hold(), which
// never refuses and never counts one id twice. Thread-safe: reservations run on the executor,
// hold and release on the loop thread. One map look-up under a mutex per job, nothing per
// document.

#include <sys/types.h>

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace docpipe {

// Why a submit or a dropped job file was refused for its submitter's quota
// (docpipe_quota_refusals_total{reason}).
enum class QuotaRefusal { kNone, kQueuedJobs, kPriority };

class QuotaLedger {
 public:
  enum class Reserve {
    kReserved,  // counted now; release() it if the job is not accepted after all
    kOverCap,   // `uid` has `cap` jobs counted already: refuse the job
    kIdTaken,   // a job of this id is counted (queued, running, or being accepted right now)
  };

  // Counts job `id` for `uid`, unless `cap` is set and `uid` has that many counted. `counted`
  // (if given) receives how many `uid` had before this call.
  Reserve reserve(const std::string& id, uid_t uid, std::optional<int64_t> cap,
                  int64_t* counted = nullptr);
  // A job accepted earlier: counted whatever the cap; nothing when `id` is counted already.
  void hold(const std::string& id, uid_t uid);
  // `id` is no longer counted (a no-op for an id that is not).
  void release(const std::string& id);

  int64_t count(uid_t uid) const;
  size_t size() const;  // ids counted, all submitters

 private:
  mutable std::mutex mu_;
  std::unordered_map<std::string, uid_t> ids_;  // counted job -> its submitter
  std::unordered_map<uid_t, int64_t> counts_;   // submitter -> jobs counted (never 0: erased)
};

}  // namespace docpipe
