#pragma once
// The daemon config's "quotas" section (docs/design.md "Quotas per submitter (issue 14)"): a cap
// on the jobs a submitter may have queued or running on this node, and on the priority of each
// job. Entries name users and groups, resolved to ids when the config loads; which entry applies
// to a submitter is decided per key (resolve_quota). Root is never limited.

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>

#include "core/credentials.h"
#include "core/field_error.h"

namespace docpipe {

// One cap of one entry. `given` false: the entry leaves the key out (the next entry decides);
// `given` with no `value`: the key is null, an explicit "no cap".
struct QuotaCap {
  bool given = false;
  std::optional<int64_t> value;
};

// One entry ("default", "users.NAME", "groups.NAME"): its caps and the JSON path it was read
// from ("quotas.users.alice"), which refusals quote.
struct QuotaEntry {
  std::string path;
  QuotaCap max_queued_jobs;
  QuotaCap max_priority;
};

struct QuotaConfig {
  bool enabled = false;  // the section is present
  std::optional<QuotaEntry> default_entry;
  std::map<uid_t, QuotaEntry> users;   // by uid, resolved at load
  std::map<gid_t, QuotaEntry> groups;  // by gid, resolved at load
};

// What applies to one submitter: each cap with the config key it comes from
// ("quotas.users.alice.max_priority"); no value: no cap.
struct ResolvedQuota {
  std::optional<int64_t> max_queued_jobs;
  std::string max_queued_jobs_source;
  std::optional<int64_t> max_priority;
  std::string max_priority_source;
  bool limited() const { return max_queued_jobs.has_value() || max_priority.has_value(); }
};

// The caps of `submitter` (nullopt: root, never limited). Per key: the user's entry if it gives
// the key; else the entries of the submitter's groups (primary and supplementary) that give it,
// the most generous winning (null, no cap, beats any number); else "default"; else no cap.
ResolvedQuota resolve_quota(const QuotaConfig& config, const std::optional<Credentials>& submitter);

// Caps on priorities run over the same range as a job's "priority".
inline constexpr int64_t kMinQuotaPriority = -100;
inline constexpr int64_t kMaxQuotaPriority = 100;
// More queued jobs than this per submitter is a typo (each is a spool file and a journal).
inline constexpr int64_t kMaxQuotaQueuedJobs = 1000000000;

// Parses the section `value` (the daemon config's "quotas"). User and group names must exist in
// the user database now (a typo is a start-up error, not a cap nobody is under); numeric names
// are ids. Every problem is appended to `errors`, with paths under "quotas".
QuotaConfig parse_quota_config(const nlohmann::json& value, FieldErrors& errors);

// The refusals' texts (the same for socket submits and dropped job files).
// "9 is above the cap 5 for uid 1000 (quotas.users.alice.max_priority)", an error on "priority".
std::string priority_over_cap_message(int64_t priority, uid_t uid, const ResolvedQuota& quota);
// "over quota: uid 1000 has 2 jobs queued or running on this node, the most that
// quotas.default.max_queued_jobs (2) allows; submit again once one of them has finished".
std::string queued_jobs_over_cap_message(uid_t uid, int64_t counted, const ResolvedQuota& quota);

}  // namespace docpipe
