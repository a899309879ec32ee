#include "config/quota_config.h"

#include <cerrno>
#include <nlohmann/json.hpp>
#include <vector>

#include "config/user_db.h"
#include "core/json_util.h"

namespace docpipe {
namespace {

using nlohmann::json;

// One cap: absent, null (no cap) or an integer in range.
QuotaCap read_cap(JsonObjectReader& r, const char* key, int64_t min, int64_t max) {
  QuotaCap cap;
  const json* v = r.get(key);
  if (v == nullptr) return cap;
  if (v->is_null()) {
    cap.given = true;
    return cap;
  }
  if (auto n = r.integer(key, min, max)) {
    cap.given = true;
    cap.value = *n;
  }
  return cap;
}

std::optional<QuotaEntry> read_entry(const json& value, const std::string& path,
                                     FieldErrors& errors) {
  const size_t before = errors.size();
  JsonObjectReader r(value, path, errors);
  if (!r.is_object()) return std::nullopt;
  QuotaEntry entry;
  entry.path = path;
  entry.max_queued_jobs = read_cap(r, "max_queued_jobs", 0, kMaxQuotaQueuedJobs);
  entry.max_priority = read_cap(r, "max_priority", kMinQuotaPriority, kMaxQuotaPriority);
  r.reject_unknown_keys();
  if (errors.size() != before) return std::nullopt;
  return entry;
}

// "users" or "groups": NAME -> entry, each NAME resolved to an id by `resolve`; two names of one
// id would make the winner depend on the order of keys, so the second is an error.
template <typename Id, typename Resolve>
std::map<Id, QuotaEntry> read_entries(const json& value, const std::string& path, const char* what,
                                      Resolve resolve, FieldErrors& errors) {
  std::map<Id, QuotaEntry> out;
  JsonObjectReader all(value, path, errors);
  if (!all.is_object()) return out;
  for (auto it = value.begin(); it != value.end(); ++it) {
    const std::string& name = it.key();
    const std::string entry_path = all.path_of(name);
    all.get(name);  // known: the entries are the object's keys
    std::optional<Id> id = resolve(name);
    if (!id) {
      errors.push_back({entry_path, std::string("no such ") + what + " " +
                                        describe_json(json(name)) +
                                        " (a name in the user database or a numeric id)"});
      continue;
    }
    if (std::string(what) == "user" && *id == 0) {
      errors.push_back({entry_path, "root (uid 0) is never limited; remove this entry"});
      continue;
    }
    std::optional<QuotaEntry> entry = read_entry(it.value(), entry_path, errors);
    if (!entry) continue;
    auto [at, inserted] = out.emplace(*id, std::move(*entry));
    if (!inserted) {
      errors.push_back({entry_path, std::string("the same ") + what + " (id " +
                                        std::to_string(*id) + ") as " + at->second.path +
                                        "; keep one entry"});
    }
  }
  return out;
}

// One key resolved: `pick` gives the entry's cap for that key.
template <typename Pick>
void resolve_key(const QuotaConfig& c, const Credentials& who, Pick pick, const char* key,
                 std::optional<int64_t>& value, std::string& source) {
  auto take = [&](const QuotaEntry& e) {
    value = pick(e).value;
    source = e.path + "." + key;
  };
  if (auto u = c.users.find(who.uid); u != c.users.end() && pick(u->second).given) {
    take(u->second);
    return;
  }
  // Among the submitter's groups: the most generous cap (no cap beats every number).
  const QuotaEntry* best = nullptr;
  auto consider = [&](gid_t g) {
    auto it = c.groups.find(g);
    if (it == c.groups.end() || !pick(it->second).given) return;
    const QuotaCap& cap = pick(it->second);
    if (best == nullptr) {
      best = &it->second;
      return;
    }
    const QuotaCap& held = pick(*best);
    if (!held.value) return;  // no cap already
    if (!cap.value || *cap.value > *held.value) best = &it->second;
  };
  consider(who.gid);
  for (gid_t g : who.groups) consider(g);
  if (best != nullptr) {
    take(*best);
    return;
  }
  if (c.default_entry && pick(*c.default_entry).given) take(*c.default_entry);
}

}  // namespace

QuotaConfig parse_quota_config(const nlohmann::json& value, FieldErrors& errors) {
  QuotaConfig out;
  JsonObjectReader r(value, "quotas", errors);
  if (!r.is_object()) return out;
  out.enabled = true;
  if (const json* d = r.get("default"))
    out.default_entry = read_entry(*d, r.path_of("default"), errors);
  if (const json* u = r.get("users")) {
    out.users = read_entries<uid_t>(*u, r.path_of("users"), "user", resolve_user, errors);
  }
  if (const json* g = r.get("groups")) {
    out.groups = read_entries<gid_t>(*g, r.path_of("groups"), "group", resolve_group, errors);
  }
  r.reject_unknown_keys();
  return out;
}

ResolvedQuota resolve_quota(const QuotaConfig& config,
                            const std::optional<Credentials>& submitter) {
  ResolvedQuota q;
  if (!config.enabled || !submitter || submitter->is_root()) return q;
  resolve_key(
      config, *submitter, [](const QuotaEntry& e) -> const QuotaCap& { return e.max_queued_jobs; },
      "max_queued_jobs", q.max_queued_jobs, q.max_queued_jobs_source);
  resolve_key(
      config, *submitter, [](const QuotaEntry& e) -> const QuotaCap& { return e.max_priority; },
      "max_priority", q.max_priority, q.max_priority_source);
  return q;
}

std::string priority_over_cap_message(int64_t priority, uid_t uid, const ResolvedQuota& quota) {
  return std::to_string(priority) + " is above the cap " +
         std::to_string(quota.max_priority.value_or(0)) + " for uid " + std::to_string(uid) + " (" +
         quota.max_priority_source + ")";
}

std::string queued_jobs_over_cap_message(uid_t uid, int64_t counted, const ResolvedQuota& quota) {
  return "over quota: uid " + std::to_string(uid) + " has " + std::to_string(counted) +
         (counted == 1 ? " job" : " jobs") + " queued or running on this node, the most that " +
         quota.max_queued_jobs_source + " (" + std::to_string(quota.max_queued_jobs.value_or(0)) +
         ") allows; submit again once one of them has finished";
}

}  // namespace docpipe
