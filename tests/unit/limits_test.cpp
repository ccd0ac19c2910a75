// Tests the per-user limits: registrations by count and size, launches, connections, and the
// store's admission of a new image (never another user's image evicted, oversized images refused).
#include "policy/limits.h"

#include <gtest/gtest.h>

namespace prewarm::policy {
namespace {

using Keys = std::vector<std::string>;

TEST(Limits, Registrations) {
  Limits l;
  l.apps_per_user = 2;
  l.registration_bytes = 100;
  EXPECT_EQ(check_registration(l, 1, false, {"/bin/true"}, "/", {}), "");
  EXPECT_NE(check_registration(l, 2, false, {"/bin/true"}, "/", {}).find("at most 2 apps"), std::string::npos);
  EXPECT_EQ(check_registration(l, 2, true, {"/bin/true"}, "/", {}), "");  // replacing one's own app
  EXPECT_NE(check_registration(l, 0, false, {"/bin/echo", std::string(100, 'x')}, "/", {}).find("limit"),
            std::string::npos);
  EXPECT_NE(check_registration(l, 0, false, {"/bin/true"}, "/", {std::string(99, 'w')}), "");
}

TEST(Limits, LaunchesAndConnections) {
  Limits l;
  l.launches_per_user = 3;
  l.launch_env_bytes = 10;
  l.connections_per_user = 2;
  EXPECT_EQ(check_launch(l, 2, 10), "");
  EXPECT_NE(check_launch(l, 3, 0), "");
  EXPECT_NE(check_launch(l, 0, 11), "");
  EXPECT_TRUE(connection_allowed(l, 1000, 1));
  EXPECT_FALSE(connection_allowed(l, 1000, 2));
  EXPECT_TRUE(connection_allowed(l, 0, 15));  // root's tools get more room, still bounded
  EXPECT_FALSE(connection_allowed(l, 0, 16));
  l.queries_waiting_per_user = 1;
  EXPECT_TRUE(query_allowed(l, 1000, 0));
  EXPECT_FALSE(query_allowed(l, 1000, 1));
  EXPECT_TRUE(query_allowed(l, 0, 7));
  EXPECT_FALSE(query_allowed(l, 0, 8));
  EXPECT_LT(Limits{}.queries_waiting_per_user, Limits{}.connections_per_user) << "queries could take every connection";
}

constexpr int64_t kSecond = 1'000'000'000;

TEST(QueryPacer, ABurstThenTheRateEachUserOnTheirOwn) {
  QueryPacer p(10);
  const int64_t t0 = 5 * kSecond;
  for (int i = 0; i < 10; ++i) EXPECT_EQ(p.take(1000, t0), 0) << "query " << i << " of the burst waited";
  // Over the pace: each waits its turn, a tenth of a second after the one before.
  const int64_t w1 = p.take(1000, t0), w2 = p.take(1000, t0);
  EXPECT_GT(w1, 0);
  EXPECT_LE(w1, kSecond / 10 + 1);
  EXPECT_NEAR(static_cast<double>(w2 - w1), kSecond / 10.0, 2);
  EXPECT_EQ(p.take(1001, t0), 0) << "another user's query waited for this one's";
  // A second later the reserved turns are paid back and there is room for eight more.
  for (int i = 0; i < 8; ++i) EXPECT_EQ(p.take(1000, t0 + kSecond), 0) << i;
  EXPECT_GT(p.take(1000, t0 + kSecond), 0);
  // After a pause the burst is back, never more than it.
  for (int i = 0; i < 10; ++i) EXPECT_EQ(p.take(1000, t0 + 100 * kSecond), 0) << i;
  EXPECT_GT(p.take(1000, t0 + 100 * kSecond), 0);
}

TEST(QueryPacer, ZeroIsNoPaceAndIdleUsersAreForgotten) {
  QueryPacer none(0);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(none.take(1000, 0), 0);
  QueryPacer p(50);
  for (uid_t u = 0; u < 2000; ++u) p.take(u, 0);
  p.take(5000, 10 * kSecond);  // every bucket has refilled by then
  EXPECT_LE(p.users(), 1025u);
}

Limits store(uint64_t budget, uint64_t share) {
  Limits l;
  l.store_budget = budget;
  l.user_store_share = share;
  return l;
}

TEST(Admission, FitsWithoutEvicting) {
  auto a = admit_image(store(1000, 500), {{"x", 2, 300, 1}}, 1, 400);
  EXPECT_EQ(a.refusal, "");
  EXPECT_EQ(a.evict, Keys{});
}

TEST(Admission, EvictsOnlyTheOwnersImagesOldestFirst) {
  const std::vector<OwnedImage> stored = {{"a-new", 1, 200, 9}, {"b", 2, 400, 1}, {"a-old", 1, 200, 5}};
  auto a = admit_image(store(1000, 600), stored, 1, 300);
  EXPECT_EQ(a.refusal, "");
  EXPECT_EQ(a.evict, Keys{"a-old"});  // 800 stored + 300 > 1000: one of user 1's suffices
}

TEST(Admission, NeverAnotherUsersImage) {
  // User 2 fills the budget within its share; user 1 has nothing to give up.
  auto a = admit_image(store(1000, 1000), {{"b", 2, 900, 1}}, 1, 200);
  EXPECT_NE(a.refusal.find("budget"), std::string::npos);
  EXPECT_EQ(a.evict, Keys{});
}

TEST(Admission, ShareBoundsOneUser) {
  auto a = admit_image(store(1000, 500), {{"a1", 1, 300, 1}, {"a2", 1, 150, 2}}, 1, 200);
  EXPECT_EQ(a.refusal, "");
  EXPECT_EQ(a.evict, Keys{"a1"});  // 450 + 200 > 500; dropping the oldest leaves 350
}

TEST(Admission, AnImageLargerThanTheBudgetOrShareIsRefused) {
  auto a = admit_image(store(1000, 500), {}, 1, 600);
  EXPECT_NE(a.refusal.find("share of the store budget"), std::string::npos);
  auto b = admit_image(store(400, 500), {{"x", 1, 10, 1}}, 1, 401);
  EXPECT_NE(b.refusal.find("larger than the store budget"), std::string::npos);
  EXPECT_EQ(b.evict, Keys{});
}

}  // namespace
}  // namespace prewarm::policy
