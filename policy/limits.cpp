#include "policy/limits.h"

#include <algorithm>

#include "policy/eviction.h"

namespace prewarm::policy {
namespace {

std::string mib(uint64_t bytes) { return std::to_string((bytes + (1 << 20) - 1) >> 20) + " MiB"; }

}  // namespace

std::string check_registration(const Limits& l, unsigned apps_of_user, bool replaces,
                               const std::vector<std::string>& argv, const std::string& cwd,
                               const std::vector<std::string>& watch) {
  if (!replaces && apps_of_user >= l.apps_per_user)
    return "limit: a user may register at most " + std::to_string(l.apps_per_user) +
           " apps; unregister one first";
  size_t bytes = cwd.size();
  for (const auto& a : argv) bytes += a.size() + 1;
  for (const auto& w : watch) bytes += w.size() + 1;
  if (bytes > l.registration_bytes)
    return "limit: the command, directory and --watch paths take " + std::to_string(bytes) +
           " bytes; at most " + std::to_string(l.registration_bytes) + " are accepted";
  return "";
}

std::string check_launch(const Limits& l, unsigned launches_of_user, size_t env_bytes) {
  if (launches_of_user >= l.launches_per_user)
    return "limit: " + std::to_string(launches_of_user) + " launches of this user are already followed";
  if (env_bytes > l.launch_env_bytes)
    return "limit: the environment is " + std::to_string(env_bytes) + " bytes; at most " +
           std::to_string(l.launch_env_bytes) + " are accepted";
  return "";
}

int64_t QueryPacer::take(uid_t uid, int64_t now_ns) {
  if (rate_ <= 0) return 0;
  // Users whose bucket has refilled are forgotten, so the map holds only recent askers.
  if (buckets_.size() > 1024)
    std::erase_if(buckets_, [&](const auto& e) { return (now_ns - e.second.at_ns) * rate_ / 1e9 + e.second.tokens >= rate_; });
  auto [it, fresh] = buckets_.try_emplace(uid, Bucket{rate_, now_ns});
  Bucket& b = it->second;
  if (!fresh && now_ns > b.at_ns) {
    b.tokens = std::min(rate_, b.tokens + static_cast<double>(now_ns - b.at_ns) * rate_ / 1e9);
    b.at_ns = now_ns;
  }
  b.tokens -= 1;  // below 0: a turn reserved after those already waiting
  return b.tokens >= 0 ? 0 : static_cast<int64_t>(-b.tokens / rate_ * 1e9) + 1;
}

bool connection_allowed(const Limits& l, uid_t uid, unsigned open_of_uid) {
  return open_of_uid < (uid == 0 ? l.connections_per_user * 8 : l.connections_per_user);
}

bool query_allowed(const Limits& l, uid_t uid, unsigned waiting_of_uid) {
  return waiting_of_uid < (uid == 0 ? l.queries_waiting_per_user * 8 : l.queries_waiting_per_user);
}

uint64_t room_for(const Limits& l, const std::vector<OwnedImage>& stored, uid_t owner) {
  uint64_t others = 0;
  for (const auto& i : stored) others += i.uid == owner ? 0 : i.bytes;
  return std::min(l.user_store_share, l.store_budget > others ? l.store_budget - others : 0);
}

Admission admit_image(const Limits& l, const std::vector<OwnedImage>& stored, uid_t owner, uint64_t bytes) {
  Admission a;
  const uint64_t cap = std::min(l.store_budget, l.user_store_share);
  if (bytes > cap) {
    a.refusal = "the image is " + mib(bytes) + ", larger than " +
                (cap == l.store_budget ? "the store budget (" : "this user's share of the store budget (") +
                mib(cap) + ")";
    return a;
  }
  const uint64_t room = room_for(l, stored, owner);
  if (bytes > room) {
    a.refusal = "the store budget (" + mib(l.store_budget) + ") is taken by other users' images";
    return a;
  }
  // The owner's own images, least recently used first, until the rest and the new one fit.
  std::vector<StoredImage> mine;
  for (const auto& i : stored)
    if (i.uid == owner) mine.push_back({i.key, i.bytes, i.last_used});
  a.evict = choose_evictions(std::move(mine), room - bytes, "");
  return a;
}

}  // namespace prewarm::policy
