#include <gtest/gtest.h>

#include "core/error.h"
#include "spec/ngram_drafter.h"

namespace vela::spec {
namespace {

std::vector<int32_t> propose(const std::vector<int32_t>& tokens, int32_t k) {
    Draft d;
    NgramDrafter(1, 3).propose_one(tokens, k, d);
    EXPECT_TRUE(d.deterministic());
    return d.tokens;
}

TEST(NgramDrafter, ContinuesTheLongestMostRecentMatch) {
    // "5 6" occurs twice; the trigram "4 5 6" only once, followed by 9 9.
    EXPECT_EQ(propose({4, 5, 6, 9, 9, 1, 5, 6, 7, 2, 4, 5, 6}, 2), (std::vector<int32_t>{9, 9}));
    // Only the bigram matches: its most recent occurrence wins.
    EXPECT_EQ(propose({5, 6, 8, 1, 5, 6, 7, 2, 3, 5, 6}, 3), (std::vector<int32_t>{7, 2, 3}));
}

TEST(NgramDrafter, StopsAtTheEndOfTheSequence) {
    EXPECT_EQ(propose({1, 2, 3, 1, 2}, 5), (std::vector<int32_t>{3, 1, 2}));
}

TEST(NgramDrafter, ProposesNothingWithoutAMatch) {
    EXPECT_TRUE(propose({1, 2, 3, 4}, 4).empty());
    EXPECT_TRUE(propose({7}, 4).empty());
    EXPECT_TRUE(propose({}, 4).empty());
}

TEST(NgramDrafter, RejectsBadSizes) {
    EXPECT_THROW(NgramDrafter(0, 3), InvalidArgument);
    EXPECT_THROW(NgramDrafter(3, 2), InvalidArgument);
    EXPECT_THROW(NgramDrafter(1, 3, 0), InvalidArgument);
    EXPECT_THROW(NgramDrafter(1, 3, 65), InvalidArgument);
}

// Branches: the continuations of the three most recent occurrences of "5 6" (7 2 | 7 3 | 8 1),
// merged where they agree, the most recent first.
TEST(NgramDrafter, MergesContinuationsIntoATree) {
    const std::vector<int32_t> seq{5, 6, 8, 1, 5, 6, 7, 3, 5, 6, 7, 2, 9, 5, 6};
    Draft d;
    NgramDrafter(2, 2, 3).propose_one(seq, 8, d);
    EXPECT_EQ(d.tokens, (std::vector<int32_t>{7, 2, 9, 5, 6, 3, 5, 6}));
    EXPECT_EQ(d.parents, (std::vector<int32_t>{-1, 0, 1, 2, 3, 0, 5, 6}));
    // A tighter budget keeps the most recent chain whole first.
    NgramDrafter(2, 2, 3).propose_one(seq, 4, d);
    EXPECT_EQ(d.tokens, (std::vector<int32_t>{7, 2, 9, 5}));
    EXPECT_EQ(d.parents, (std::vector<int32_t>{-1, 0, 1, 2}));
    // Cutting a tree (the scheduler does when short of budget) leaves a tree.
    NgramDrafter(2, 2, 3).propose_one(seq, 3, d);
    Draft t;
    NgramDrafter(2, 2, 3).propose_one(seq, 8, t);
    t.truncate(3);
    EXPECT_EQ(t.tokens, d.tokens);
    EXPECT_EQ(t.parents, d.parents);
}

}  // namespace
}  // namespace vela::spec
