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
