#pragma once
// Engine tests' driver: requests submitted together, stepped to completion.
#include <cstdint>
#include <map>
#include <vector>

#include "engine/engine.h"

namespace vela::test {

// Greedy requests of `max_tokens` tokens each, end of generation ignored.
inline std::vector<Request> greedy_requests(const std::vector<std::vector<int32_t>>& prompts,
                                            int64_t max_tokens) {
    std::vector<Request> out;
    for (const auto& p : prompts) {
        Request r;
        r.prompt = p;
        r.max_tokens = max_tokens;
        r.ignore_eos = true;
        r.sampling.temperature = 0;
        out.push_back(r);
    }
    return out;
}

// Each request's tokens once `engine` has run them all to completion.
inline std::vector<std::vector<int32_t>> run_requests(Engine& engine,
                                                      const std::vector<Request>& reqs) {
    std::map<int64_t, size_t> index;
    for (size_t i = 0; i < reqs.size(); ++i) index[engine.add_request(reqs[i])] = i;
    std::vector<std::vector<int32_t>> out(reqs.size());
    while (engine.has_work()) {
        for (const StepOutput& o : engine.step()) {
            std::vector<int32_t>& t = out[index.at(o.request_id)];
            t.insert(t.end(), o.tokens.begin(), o.tokens.end());
        }
    }
    return out;
}

}  // namespace vela::test
