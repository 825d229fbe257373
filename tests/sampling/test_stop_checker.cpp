// Stop strings over a token stream: matches spanning tokens, hold-back of possible beginnings,
// release when a beginning turns out not to be one.
#include <gtest/gtest.h>

#include <random>

#include "../common/test_seed.h"
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
    std::mt19937 rng(test::fresh_seed());
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

TEST(StopChecker, StopSpanningManyTokensIsFound) {
    std::string stop;
    for (int i = 0; i < 40; ++i) stop += "line " + std::to_string(i) + "\n";
    StopChecker s({stop, "END"});
    std::string out;
    StopChecker::Update u = s.push("prologue ");
    out += u.text;
    // A false start first: the first half of the stop string, then something else.
    for (size_t i = 0; i < stop.size() / 2; i += 3) out += s.push(stop.substr(i, 3)).text;
    out += s.push("!").text;
    for (size_t i = 0; i < stop.size() && !u.stopped; i += 2) {
        u = s.push(stop.substr(i, 2));
        out += u.text;
        if (!u.stopped) {
            EXPECT_EQ(s.held_back(), i + 2);  // all of it may still be the stop
        }
    }
    ASSERT_TRUE(u.stopped);
    EXPECT_EQ(u.stop_index, 0);
    EXPECT_EQ(out, "prologue " + stop.substr(0, (stop.size() / 2 + 2) / 3 * 3) + "!");
}

// The slow path the server must never take: each push's work depends on the new text and the
// longest stop string, not on how much text came before (the held-back text is not rescanned).
TEST(StopChecker, WorkPerPushIsBoundedByNewTextAndLongestStop) {
    const std::vector<std::string> stops = {std::string(1000, 'a') + "b", "aab", "xyz"};
    size_t stop_bytes = 0;
    for (const std::string& x : stops) stop_bytes += x.size();
    StopChecker s(stops);
    uint64_t pushed = 0;
    for (int i = 0; i < 20000; ++i) {
        // Runs of 'a' longer than the stop keep 1000 bytes held back; "c" breaks them.
        const std::string piece = i % 1000 == 1 ? "c" : "aa";
        const uint64_t before = s.steps();
        ASSERT_FALSE(s.push(piece).stopped);
        const uint64_t work = s.steps() - before;
        // KMP: one step per byte per stop string, plus fall-backs that undo at most the
        // matched prefix held before the push and the bytes it gained in it.
        ASSERT_LE(work, 2 * stops.size() * piece.size() + stop_bytes) << "push " << i;
        pushed += piece.size();
    }
    EXPECT_LE(s.steps(), 2 * stops.size() * pushed);  // amortised: O(1) per byte and stop
    EXPECT_EQ(s.held_back(), 1000u);
}

// The stop string a naive scan of all the text so far finds first (earliest start, then the
// longest), or npos.
std::pair<size_t, int> naive_first_stop(const std::string& text,
                                        const std::vector<std::string>& stops) {
    size_t first = std::string::npos;
    int index = -1;
    for (size_t i = 0; i < stops.size(); ++i) {
        const size_t at = text.find(stops[i]);
        if (at != std::string::npos &&
            (at < first || (at == first && stops[i].size() > stops[index].size()))) {
            first = at;
            index = static_cast<int>(i);
        }
    }
    return {first, index};
}

// Property against a rescan of everything after every push: random stops and texts over a
// three-letter alphabet (many partial matches), random token boundaries.
TEST(StopChecker, MatchesANaiveRescanOfAllText) {
    const uint32_t seed = test::fresh_seed();
    SCOPED_TRACE(testing::Message() << "seed " << seed);
    std::mt19937 rng(seed);
    auto word = [&](size_t len) {
        std::string w;
        for (size_t i = 0; i < len; ++i) w.push_back(static_cast<char>('a' + rng() % 3));
        return w;
    };
    for (int trial = 0; trial < 2000; ++trial) {
        std::vector<std::string> stops;
        for (size_t n = 1 + rng() % 4; stops.size() < n;) stops.push_back(word(1 + rng() % 7));
        const std::string text = word(rng() % 80);
        StopChecker s(stops);
        std::string all, out;
        bool stopped = false;
        for (size_t i = 0; i < text.size() && !stopped;) {
            const size_t len = std::min(text.size() - i, static_cast<size_t>(rng() % 6));
            const auto u = s.push(std::string_view(text).substr(i, len));
            all += text.substr(i, len);
            i += len;
            out += u.text;
            stopped = u.stopped;
            const auto [at, index] = naive_first_stop(all, stops);
            ASSERT_EQ(stopped, at != std::string::npos) << all;
            if (stopped) {
                ASSERT_EQ(u.stop_index, index) << all;
                ASSERT_EQ(out, all.substr(0, at)) << all;
            } else {
                ASSERT_EQ(s.held_back(), partial_stop_suffix(all, stops)) << all;
                ASSERT_EQ(out + all.substr(out.size()), all);
            }
        }
        if (!stopped) {
            ASSERT_EQ(out + s.flush(), all);
        }
    }
}

TEST(StopChecker, PartialSuffixOfPeriodicText) {
    const std::vector<std::string> stops = {"abababx"};
    EXPECT_EQ(partial_stop_suffix("abababab", stops), 6u);
    EXPECT_EQ(partial_stop_suffix("ababa", stops), 5u);
    EXPECT_EQ(partial_stop_suffix("abababx", stops), 0u);
}

}  // namespace
}  // namespace vela
