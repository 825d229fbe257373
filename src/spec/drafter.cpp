#include "spec/drafter.h"

namespace vela::spec {

void Draft::truncate(int64_t n) {
    if (n >= size()) return;
    const size_t vocab = deterministic() ? 0 : probs.size() / tokens.size();
    tokens.resize(static_cast<size_t>(n));
    if (is_tree()) parents.resize(static_cast<size_t>(n));  // parents precede: still a tree
    probs.resize(static_cast<size_t>(n) * vocab);
}

}  // namespace vela::spec
