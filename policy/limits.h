// What one user may take of prewarmd: apps, the size of a registration and of a launch request,
// launches and connections at once, queries a second, and a share of the image store. Each check
// returns "" when the request fits, else the reason a user is shown.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace prewarm::policy {

struct Limits {
  unsigned apps_per_user = 32;
  size_t registration_bytes = 64 << 10;  // argv + cwd + --watch paths
  size_t launch_env_bytes = 256 << 10;   // the environment a launch sends
  unsigned launches_per_user = 64;       // launches prewarmd follows at once
  unsigned connections_per_user = 8;     // control connections open at once (root: 8x)
  size_t connections_total = 512;        // all users' together
  uint64_t store_budget = 8ull << 30;
  uint64_t user_store_share = 4ull << 30;  // one user's images together
  unsigned queries_per_second = 50;        // list and stats of one user, after a burst as many; 0: no pace
  unsigned queries_waiting_per_user = 4;   // list and stats waiting for their answer (root: 8x); more: busy
};

// list and stats of one user: a burst of Limits::queries_per_second at once, then that many a second.
// A query over the pace waits its turn (it is answered later, never refused), so a client that
// asks back to back is answered at the pace and costs the loop that serves launches no more. The
// waiting queries of one user are bounded by their connections, so the wait is too.
class QueryPacer {
 public:
  explicit QueryPacer(unsigned per_second) : rate_(per_second) {}
  // Nanoseconds the query of `uid` asked at `now_ns` (a monotonic clock) waits; 0: answer now.
  int64_t take(uid_t uid, int64_t now_ns);
  size_t users() const { return buckets_.size(); }

 private:
  struct Bucket {
    double tokens;
    int64_t at_ns;
  };
  double rate_;
  std::map<uid_t, Bucket> buckets_;
};

std::string check_registration(const Limits& l, unsigned apps_of_user, bool replaces,
                               const std::vector<std::string>& argv, const std::string& cwd,
                               const std::vector<std::string>& watch);
std::string check_launch(const Limits& l, unsigned launches_of_user, size_t env_bytes);
bool connection_allowed(const Limits& l, uid_t uid, unsigned open_of_uid);
// Half of a user's connections at most wait for queries, so their launches always find one.
bool query_allowed(const Limits& l, uid_t uid, unsigned waiting_of_uid);

struct OwnedImage {
  std::string key;
  uid_t uid = 0;
  uint64_t bytes = 0;
  int64_t last_used = 0;
};
struct Admission {
  std::string refusal;             // non-empty: the new image is not kept, and nothing is evicted
  std::vector<std::string> evict;  // the owner's own images to drop first, least recently used first
};
// The most a new image of `owner` may take: within the owner's share, and within the budget less
// other users' images (the owner's own may be evicted for it, no one else's).
uint64_t room_for(const Limits& l, const std::vector<OwnedImage>& stored, uid_t owner);
// Whether a new image of `bytes` for `owner` fits: it never exceeds the budget or the owner's
// share, and it may push out only the owner's own images, never another user's.
Admission admit_image(const Limits& l, const std::vector<OwnedImage>& stored, uid_t owner, uint64_t bytes);

}  // namespace prewarm::policy
