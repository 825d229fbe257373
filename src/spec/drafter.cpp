#include "spec/drafter.h"

#include <algorithm>

namespace vela::spec {

void Draft::truncate(int64_t n) {
    if (n >= size()) return;
    const size_t vocab = deterministic() ? 0 : probs.size() / tokens.size();
    tokens.resize(static_cast<size_t>(n));
    if (is_tree()) parents.resize(static_cast<size_t>(n));  // parents precede: still a tree
    probs.resize(static_cast<size_t>(n) * vocab);
}

int64_t Draft::depth() const {
    if (!is_tree()) return size();
    std::vector<int64_t> d(tokens.size());
    int64_t most = 0;
    for (size_t i = 0; i < tokens.size(); ++i) {
        d[i] = parents[i] < 0 ? 1 : d[static_cast<size_t>(parents[i])] + 1;
        most = std::max(most, d[i]);
    }
    return most;
}

}  // namespace vela::spec
