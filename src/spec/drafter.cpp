#include "spec/drafter.h"

namespace vela::spec {

void Draft::truncate(int64_t n) {
    if (n >= size()) return;
    const size_t vocab = deterministic() ? 0 : probs.size() / tokens.size();
    tokens.resize(static_cast<size_t>(n));
    probs.resize(static_cast<size_t>(n) * vocab);
}

}  // namespace vela::spec
