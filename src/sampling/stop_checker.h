#pragma once
// Stop strings over a streamed, detokenised text: a stop string may arrive split over several
// tokens, so text that could be the beginning of one is held back until it either completes the
// stop string (then it is dropped, with everything after it) or cannot any more (then it is
// released). Positions are bytes of UTF-8; the text streamed never contains a stop string.
//
// Cost: each stop string is a Knuth-Morris-Pratt automaton fed only the new bytes, so a push
// costs O(new bytes + longest stop string) per stop string (amortised O(new bytes)), however
// long the text so far or the held-back part is.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace vela {

class StopChecker {
  public:
    struct Update {
        std::string text;      // safe to stream now
        bool stopped = false;  // a stop string completed; text ends right before it
        int stop_index = -1;   // which stop string (index into the constructor's list)
    };

    // Empty stop strings are rejected (InvalidArgument): they would match before any text.
    explicit StopChecker(std::vector<std::string> stops = {});

    // Appends newly decoded text. When several stop strings complete, the one starting earliest
    // wins (the longest among those starting at the same byte). Pushing after a stop is a bug.
    Update push(std::string_view text);

    // Bytes currently held back because they might start a stop string.
    size_t held_back() const { return pending_.size(); }

    // The generation ended for another reason (EOS, length): releases the held-back text.
    std::string flush();

    bool stopped() const { return stopped_; }
    const std::vector<std::string>& stops() const { return stops_; }

    // Automaton transitions so far (one per byte and stop string, plus KMP fall-backs): lets
    // tests bound the work of a push without timing it.
    uint64_t steps() const { return steps_; }

  private:
    std::vector<std::string> stops_;
    // Per stop string: KMP fall-back table, and the length of the longest prefix of it that
    // ends the text pushed so far (always <= pending_.size()).
    std::vector<std::vector<uint32_t>> fallback_;
    std::vector<size_t> matched_;
    std::string pending_;  // text received but not yet released
    bool stopped_ = false;
    uint64_t steps_ = 0;
};

// Length of the longest suffix of `text` that is a proper prefix of some stop string: the bytes
// a streamer must hold back.
size_t partial_stop_suffix(std::string_view text, const std::vector<std::string>& stops);

}  // namespace vela
