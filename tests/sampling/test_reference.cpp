// Sampler::distribution() against numpy float64 fixtures (gen_sampling_reference.py): each
// processor alone, then the whole chain.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "sampling/sampler.h"

namespace vela {
namespace {

nlohmann::json load_cases() {
    const std::string path =
        std::string(VELA_SOURCE_DIR) + "/tests/sampling/data/sampling_reference.json";
    std::ifstream in(path);
    if (!in) throw std::runtime_error("missing fixture " + path);
    return nlohmann::json::parse(in)["cases"];
}

SamplingParams params_from(const nlohmann::json& j) {
    SamplingParams p;
    p.temperature = j["temperature"].get<float>();
    p.top_k = j["top_k"].get<int32_t>();
    p.top_p = j["top_p"].get<float>();
    p.min_p = j["min_p"].get<float>();
    p.repetition_penalty = j["repetition_penalty"].get<float>();
    p.frequency_penalty = j["frequency_penalty"].get<float>();
    p.presence_penalty = j["presence_penalty"].get<float>();
    p.penalty_last_n = j["penalty_last_n"].get<int32_t>();
    p.seed = 1;
    return p;
}

TEST(SamplingReference, DistributionMatchesNumpy) {
    const nlohmann::json cases = load_cases();
    ASSERT_GE(cases.size(), 10u);
    for (const auto& c : cases) {
        SCOPED_TRACE(c["name"].get<std::string>());
        const auto logits = c["logits"].get<std::vector<float>>();
        const auto history = c["history"].get<std::vector<int32_t>>();
        const auto support = c["support"].get<std::vector<int32_t>>();
        const auto expected = c["probs"].get<std::vector<double>>();
        std::vector<double> want(logits.size(), 0.0);
        for (size_t i = 0; i < support.size(); ++i)
            want[static_cast<size_t>(support[i])] = expected[i];

        Sampler sampler(params_from(c["params"]));
        std::vector<float> probs(logits.size(), std::numeric_limits<float>::quiet_NaN());
        sampler.distribution(logits, history, probs);
        ASSERT_EQ(probs.size(), logits.size());
        // Float logits and penalties against float64: 1e-5 relative covers the float32 rounding
        // of penalised logits; the support itself must match exactly.
        for (size_t t = 0; t < logits.size(); ++t) {
            if (want[t] == 0.0) {
                ASSERT_EQ(probs[t], 0.0f) << "token " << t << " should have been removed";
            } else {
                ASSERT_NEAR(probs[t], want[t], 1e-7 + 1e-5 * want[t]) << "token " << t;
            }
        }
    }
}

// sample() must only ever return tokens of the reference support.
TEST(SamplingReference, SamplesStayInSupport) {
    for (const auto& c : load_cases()) {
        SCOPED_TRACE(c["name"].get<std::string>());
        const auto logits = c["logits"].get<std::vector<float>>();
        const auto history = c["history"].get<std::vector<int32_t>>();
        const auto support = c["support"].get<std::vector<int32_t>>();
        std::vector<bool> allowed(logits.size(), false);
        for (int32_t t : support) allowed[static_cast<size_t>(t)] = true;
        Sampler sampler(params_from(c["params"]));
        for (int i = 0; i < 200; ++i) {
            std::vector<float> row = logits;
            const int32_t t = sampler.sample(row, history);
            ASSERT_TRUE(t >= 0 && static_cast<size_t>(t) < logits.size() &&
                        allowed[static_cast<size_t>(t)])
                << "sampled " << t;
        }
    }
}

}  // namespace
}  // namespace vela
