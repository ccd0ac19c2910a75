// Tests the store's eviction rule: least recently used first, no more than needed to fit the
// budget, never the image just captured, and a stable order among images used at the same time.
#include "policy/eviction.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace prewarm::policy {
namespace {

using Keys = std::vector<std::string>;

TEST(ChooseEvictions, NothingWhenUnderOrAtBudget) {
  const std::vector<StoredImage> imgs = {{"a", 100, 1}, {"b", 100, 2}};
  EXPECT_EQ(choose_evictions(imgs, 1000, ""), Keys{});
  EXPECT_EQ(choose_evictions(imgs, 200, ""), Keys{});  // exactly at the budget fits
  EXPECT_EQ(choose_evictions({}, 0, ""), Keys{});
}

TEST(ChooseEvictions, LeastRecentlyUsedFirstRegardlessOfInputOrder) {
  const std::vector<StoredImage> imgs = {{"new", 100, 30}, {"old", 100, 10}, {"mid", 100, 20}};
  EXPECT_EQ(choose_evictions(imgs, 0, ""), (Keys{"old", "mid", "new"}));
}

TEST(ChooseEvictions, StopsAsSoonAsTheRestFits) {
  const std::vector<StoredImage> imgs = {{"d", 100, 4}, {"c", 100, 3}, {"b", 100, 2}, {"a", 100, 1}};
  EXPECT_EQ(choose_evictions(imgs, 399, ""), (Keys{"a"}));
  EXPECT_EQ(choose_evictions(imgs, 300, ""), (Keys{"a"}));
  EXPECT_EQ(choose_evictions(imgs, 299, ""), (Keys{"a", "b"}));
  EXPECT_EQ(choose_evictions(imgs, 100, ""), (Keys{"a", "b", "c"}));
}

// A small old image goes first even if dropping a big new one alone would have been enough:
// recency, not size, decides.
TEST(ChooseEvictions, RecencyNotSize) {
  const std::vector<StoredImage> imgs = {{"small-old", 10, 1}, {"big-new", 1000, 2}, {"mid", 50, 3}};
  EXPECT_EQ(choose_evictions(imgs, 100, ""), (Keys{"small-old", "big-new"}));
}

TEST(ChooseEvictions, NeverTheKeptImage) {
  const std::vector<StoredImage> imgs = {{"kept", 100, 1}, {"b", 100, 2}, {"c", 100, 3}};
  EXPECT_EQ(choose_evictions(imgs, 200, "kept"), (Keys{"b"}));
  EXPECT_EQ(choose_evictions(imgs, 100, "kept"), (Keys{"b", "c"}));
}

TEST(ChooseEvictions, KeptImageAloneOverBudgetEvictsAllOthersButItself) {
  const std::vector<StoredImage> imgs = {{"a", 10, 5}, {"kept", 5000, 1}, {"b", 10, 6}};
  EXPECT_EQ(choose_evictions(imgs, 1000, "kept"), (Keys{"a", "b"}));
  EXPECT_EQ(choose_evictions({{"kept", 5000, 1}}, 0, "kept"), Keys{});
}

TEST(ChooseEvictions, TiesBrokenByKey) {
  const std::vector<StoredImage> imgs = {{"c", 100, 7}, {"a", 100, 7}, {"b", 100, 7}, {"z", 100, 1}};
  EXPECT_EQ(choose_evictions(imgs, 100, ""), (Keys{"z", "a", "b"}));
  // The same answer for every input order.
  const std::vector<StoredImage> reversed(imgs.rbegin(), imgs.rend());
  EXPECT_EQ(choose_evictions(reversed, 100, ""), (Keys{"z", "a", "b"}));
}

TEST(ChooseEvictions, NegativeAndZeroTimesSortFirst) {
  const std::vector<StoredImage> imgs = {{"zero", 1, 0}, {"neg", 1, -5}, {"pos", 1, 5}};
  EXPECT_EQ(choose_evictions(imgs, 1, ""), (Keys{"neg", "zero"}));
}

}  // namespace
}  // namespace prewarm::policy
