// Stop strings over a token stream: matches spanning tokens, hold-back of possible beginnings,
// release when a beginning turns out not to be one.
#include <gtest/gtest.h>

#include <random>

#include "core/error.h"
#include "sampling/stop_checker.h"

namespace vela {
namespace {

TEST(StopChecker, StopSpanningSeveralTokens) {
    StopChecker s({"</answer>"});
    std::string out;
    for (const char* piece : {"The result", " is 4.</", "ans", "wer", ">tail"}) {
        const auto u = s.push(piece);
        out += u.text;
        if (u.stopped) {
            EXPECT_EQ(u.stop_index, 0);
            EXPECT_STREQ(piece, ">tail");
            break;
        }
    }
    EXPECT_TRUE(s.stopped());
    EXPECT_EQ(out, "The result is 4.");
}

TEST(StopChecker, HoldsBackPossibleBeginningsAndReleasesThem) {
    StopChecker s({"\nUser:", "###"});
    auto u = s.push("Hello\nUs");
    EXPECT_EQ(u.text, "Hello");
    EXPECT_EQ(s.held_back(), 3u);
    u = s.push("ually #");
    EXPECT_EQ(u.text, "\nUsually ");  // "\nUs" was not "\nUser:" after all
    EXPECT_EQ(s.held_back(), 1u);
    u = s.push("#");
    EXPECT_EQ(u.text, "");
    EXPECT_EQ(s.held_back(), 2u);
    EXPECT_FALSE(u.stopped);
    EXPECT_EQ(s.flush(), "##");  // generation ended for another reason: nothing is lost
    EXPECT_EQ(s.held_back(), 0u);
}

TEST(StopChecker, EarliestMatchWinsAndTextAfterIsDropped) {
    StopChecker s({"world", "lo w", "lo"});
    const auto u = s.push("hello world");
    EXPECT_TRUE(u.stopped);
    EXPECT_EQ(u.text, "hel");
    EXPECT_EQ(u.stop_index, 1);  // "lo w" and "lo" start together: the longer one is reported
}

TEST(StopChecker, NoStopsStreamsEverything) {
    StopChecker s;
    EXPECT_EQ(s.push("abc").text, "abc");
    EXPECT_EQ(s.held_back(), 0u);
}

TEST(StopChecker, RejectsEmptyStopString) {
    EXPECT_THROW(StopChecker({"ok", ""}), InvalidArgument);
}

TEST(StopChecker, PartialSuffix) {
    const std::vector<std::string> stops = {"abcd", "cx"};
    EXPECT_EQ(partial_stop_suffix("zzabc", stops), 3u);
    EXPECT_EQ(partial_stop_suffix("zzab", stops), 2u);
    EXPECT_EQ(partial_stop_suffix("zzc", stops), 1u);
    EXPECT_EQ(partial_stop_suffix("zzabcd", stops), 0u);  // a full match is not "partial"
    EXPECT_EQ(partial_stop_suffix("", stops), 0u);
}

// Property: however a text is cut into tokens, the streamed output equals the text up to the
// first stop string (or all of it plus the flush), and never contains a stop string.
TEST(StopChecker, AnySplitGivesTheSameOutput) {
    const std::string text = "one two <|end|> three <|e";
    const std::vector<std::string> stops = {"<|end|>", "four"};
    std::mt19937 rng(std::random_device{}());
    for (int trial = 0; trial < 300; ++trial) {
        StopChecker s(stops);
        std::string out;
        bool stopped = false;
        for (size_t i = 0; i < text.size() && !stopped;) {
            const size_t len = std::min(text.size() - i, static_cast<size_t>(rng() % 5));
            const auto u = s.push(std::string_view(text).substr(i, len));
            out += u.text;
            stopped = u.stopped;
            i += len;
        }
        ASSERT_TRUE(stopped);
        ASSERT_EQ(out, "one two ");
    }
    StopChecker tail(stops);
    std::string out = tail.push("three <|e").text;
    EXPECT_EQ(out, "three ");
    EXPECT_EQ(out + tail.flush(), "three <|e");
}

}  // namespace
}  // namespace vela
