#include "daemon/quota_ledger.h"

namespace docpipe {

QuotaLedger::Reserve QuotaLedger::reserve(const std::string& id, uid_t uid,
                                          std::optional<int64_t> cap, int64_t* counted) {
  std::lock_guard lock(mu_);
  auto c = counts_.find(uid);
  const int64_t now = c == counts_.end() ? 0 : c->second;
  if (counted != nullptr) *counted = now;
  if (ids_.count(id) != 0) return Reserve::kIdTaken;
  if (cap && now >= *cap) return Reserve::kOverCap;
  ids_.emplace(id, uid);
  ++counts_[uid];
  return Reserve::kReserved;
}

void QuotaLedger::hold(const std::string& id, uid_t uid) {
  std::lock_guard lock(mu_);
  if (ids_.emplace(id, uid).second) ++counts_[uid];
}

void QuotaLedger::release(const std::string& id) {
  std::lock_guard lock(mu_);
  auto it = ids_.find(id);
  if (it == ids_.end()) return;
  auto c = counts_.find(it->second);
  if (c != counts_.end() && --c->second <= 0) counts_.erase(c);
  ids_.erase(it);
}

int64_t QuotaLedger::count(uid_t uid) const {
  std::lock_guard lock(mu_);
  auto c = counts_.find(uid);
  return c == counts_.end() ? 0 : c->second;
}

size_t QuotaLedger::size() const {
  std::lock_guard lock(mu_);
  return ids_.size();
}

}  // namespace docpipe
