#include "sampling/stop_checker.h"

#include <algorithm>

#include "core/error.h"

namespace vela {
namespace {

// fallback[i]: length of the longest proper prefix of s[0..i] that is also its suffix.
std::vector<uint32_t> kmp_fallback(std::string_view s) {
    std::vector<uint32_t> f(s.size(), 0);
    uint32_t k = 0;
    for (size_t i = 1; i < s.size(); ++i) {
        while (k > 0 && s[i] != s[k]) k = f[k - 1];
        if (s[i] == s[k]) ++k;
        f[i] = k;
    }
    return f;
}

// One KMP transition: from `matched` (< s.size()) bytes of s matched, over byte c.
size_t advance(std::string_view s, const std::vector<uint32_t>& fallback, size_t matched, char c,
               uint64_t& steps) {
    ++steps;
    while (matched > 0 && s[matched] != c) {
        matched = fallback[matched - 1];
        ++steps;
    }
    return s[matched] == c ? matched + 1 : 0;
}

}  // namespace

size_t partial_stop_suffix(std::string_view text, const std::vector<std::string>& stops) {
    size_t best = 0;
    uint64_t steps = 0;
    for (const std::string& s : stops) {
        if (s.size() < 2) continue;
        // Only suffixes shorter than the stop string can be unfinished matches of it, and a
        // window that short cannot hold a whole match.
        const std::string_view window =
            text.substr(text.size() - std::min(text.size(), s.size() - 1));
        const std::vector<uint32_t> fallback = kmp_fallback(s);
        size_t matched = 0;
        for (const char c : window) matched = advance(s, fallback, matched, c, steps);
        best = std::max(best, matched);
    }
    return best;
}

StopChecker::StopChecker(std::vector<std::string> stops) : stops_(std::move(stops)) {
    for (size_t i = 0; i < stops_.size(); ++i) {
        if (stops_[i].empty()) fail<InvalidArgument>("stop: stop string #{} is empty", i);
        fallback_.push_back(kmp_fallback(stops_[i]));
    }
    matched_.assign(stops_.size(), 0);
}

StopChecker::Update StopChecker::push(std::string_view text) {
    VELA_ASSERT(!stopped_);
    const size_t old_size = pending_.size();
    pending_.append(text);
    Update u;
    size_t first = std::string::npos;
    for (size_t i = 0; i < stops_.size(); ++i) {
        const std::string& stop = stops_[i];
        for (size_t j = 0; j < text.size(); ++j) {
            matched_[i] = advance(stop, fallback_[i], matched_[i], text[j], steps_);
            if (matched_[i] < stop.size()) continue;
            // Its bytes before the new text were held back (matched_ never exceeds pending_),
            // so the match starts inside pending_.
            const size_t at = old_size + j + 1 - stop.size();
            const bool better =
                at < first ||
                (at == first && stop.size() > stops_[static_cast<size_t>(u.stop_index)].size());
            if (better) {
                first = at;
                u.stop_index = static_cast<int>(i);
            }
            break;  // later matches of this string start later
        }
    }
    if (first != std::string::npos) {
        u.text = pending_.substr(0, first);
        u.stopped = stopped_ = true;
        pending_.clear();
        return u;
    }
    size_t hold = 0;
    for (const size_t m : matched_) hold = std::max(hold, m);
    u.text = pending_.substr(0, pending_.size() - hold);
    pending_.erase(0, pending_.size() - hold);
    return u;
}

std::string StopChecker::flush() {
    std::string out = std::move(pending_);
    pending_.clear();
    // Released text can no longer be the start of a match.
    std::fill(matched_.begin(), matched_.end(), 0);
    return out;
}

}  // namespace vela
