#include "sampling/stop_checker.h"

#include <algorithm>

#include "core/error.h"

namespace vela {

size_t partial_stop_suffix(std::string_view text, const std::vector<std::string>& stops) {
    size_t best = 0;
    for (const std::string& s : stops) {
        // Only suffixes shorter than the stop string can be unfinished matches of it.
        const size_t longest = std::min(text.size(), s.size() - 1);
        for (size_t len = longest; len > best; --len) {
            if (text.substr(text.size() - len) == std::string_view(s).substr(0, len)) {
                best = len;
                break;
            }
        }
    }
    return best;
}

StopChecker::StopChecker(std::vector<std::string> stops) : stops_(std::move(stops)) {
    for (size_t i = 0; i < stops_.size(); ++i)
        if (stops_[i].empty()) fail<InvalidArgument>("stop: stop string #{} is empty", i);
}

StopChecker::Update StopChecker::push(std::string_view text) {
    VELA_ASSERT(!stopped_);
    pending_.append(text);
    Update u;
    // pending_ holds at most (longest stop - 1) old bytes plus the new text, so searching all of
    // it stays proportional to the increment.
    size_t first = std::string::npos;
    for (size_t i = 0; i < stops_.size(); ++i) {
        const size_t at = pending_.find(stops_[i]);
        if (at == std::string::npos) continue;
        const bool better =
            at < first ||
            (at == first && stops_[i].size() > stops_[static_cast<size_t>(u.stop_index)].size());
        if (better) {
            first = at;
            u.stop_index = static_cast<int>(i);
        }
    }
    if (first != std::string::npos) {
        u.text = pending_.substr(0, first);
        u.stopped = stopped_ = true;
        pending_.clear();
        return u;
    }
    const size_t hold = partial_stop_suffix(pending_, stops_);
    u.text = pending_.substr(0, pending_.size() - hold);
    pending_.erase(0, pending_.size() - hold);
    return u;
}

std::string StopChecker::flush() {
    std::string out = std::move(pending_);
    pending_.clear();
    return out;
}

}  // namespace vela
