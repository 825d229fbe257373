#pragma once
// Lossless verification of a draft chain (Leviathan et al. 2023; Chen et al. 2023). For draft
// token x_i drawn from q_i, with p_i the target's distribution after the same processing the
// non-speculative sampler applies (penalties, top-k, top-p, min-p, temperature: Sampler::
// distribution): accept x_i with probability min(1, p_i(x_i) / q_i(x_i)); at the first
// rejection, draw from norm(max(0, p_i - q_i)) and stop; when all k are accepted, draw a bonus
// token from p_k. Every emitted token then follows the target's distribution exactly.
//
// Greedy is the exact special case: p is one-hot at the argmax, so a draft token is accepted
// iff it is the argmax, and the token after the accepted run is the argmax. A deterministic
// drafter has q one-hot. A draft token with p >= q is accepted without a coin (probability 1).
//
// Token trees (deterministic drafts; SpecInfer's multi-candidate rule with one-hot q): at a node,
// its children are tried in order, child x accepted with probability r(x) / sum(r), where r is p
// with the children already rejected set to 0; the first accepted child becomes the node; when
// none is, the token is drawn from r. That is exactly a draw from p, so trees are lossless too;
// a chain is the tree whose nodes have one child each, and gives the same draws as above.
#include <cstdint>
#include <span>
#include <vector>

#include "sampling/sampler.h"
#include "spec/drafter.h"

namespace vela::spec {

struct Verdict {
    int64_t n_accepted = 0;       // draft tokens accepted
    std::vector<int32_t> tokens;  // the accepted drafts, then the corrected or bonus token
    std::vector<int32_t> path;    // the accepted drafts' indices in the draft (0, 1, ... for chains)
};

class Verifier {
  public:
    // rows: the target's logits for the draft's size() + 1 positions (n_vocab floats each; row
    // i follows history + draft.tokens[0..i)); the last row is modified by the penalties.
    // history: the sequence's tokens before the draft. Uses `sampler`'s RNG.
    // For a tree, row 1 + i follows node i's path.
    Verdict verify(Sampler& sampler, std::span<float> rows, std::span<const int32_t> history,
                   const Draft& draft);

  private:
    Verdict verify_tree(Sampler& sampler, std::span<float> rows, const Draft& draft);

    std::vector<float> p_;
    std::vector<float> residual_;
    std::vector<int32_t> history_;
};

}  // namespace vela::spec
