// validate() accepts the documented edges and rejects absurd values with a message that names
// the field and the value.
#include <gtest/gtest.h>

#include <functional>
#include <limits>

#include "core/error.h"
#include "sampling/sampler.h"

namespace vela {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

void expect_rejected(const std::function<void(SamplingParams&)>& edit, const std::string& field,
                     const std::string& value) {
    SamplingParams p;
    edit(p);
    try {
        p.validate();
        ADD_FAILURE() << "accepted bad " << field << " = " << value;
    } catch (const InvalidArgument& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find(field), std::string::npos) << msg;
        EXPECT_NE(msg.find(value), std::string::npos) << msg;
    }
    EXPECT_THROW(Sampler{p}, InvalidArgument);  // the constructor validates too
}

TEST(SamplingParams, DefaultsAndEdgesAreValid) {
    SamplingParams p;
    EXPECT_NO_THROW(p.validate());
    p.temperature = 0.0f;
    p.top_k = -5;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.penalty_last_n = -1;
    p.frequency_penalty = -2.0f;
    p.presence_penalty = 2.0f;
    EXPECT_NO_THROW(p.validate());
    p.min_p = 1.0f;
    p.top_p = 1e-6f;
    p.temperature = 100.0f;
    EXPECT_NO_THROW(p.validate());
}

TEST(SamplingParams, RejectsAbsurdValues) {
    expect_rejected([](auto& p) { p.temperature = -0.5f; }, "temperature", "-0.5");
    expect_rejected([](auto& p) { p.temperature = kNaN; }, "temperature", "nan");
    expect_rejected([](auto& p) { p.temperature = kInf; }, "temperature", "inf");
    expect_rejected([](auto& p) { p.top_p = 0.0f; }, "top_p", "0");
    expect_rejected([](auto& p) { p.top_p = 1.5f; }, "top_p", "1.5");
    expect_rejected([](auto& p) { p.top_p = kNaN; }, "top_p", "nan");
    expect_rejected([](auto& p) { p.min_p = -0.1f; }, "min_p", "-0.1");
    expect_rejected([](auto& p) { p.min_p = 2.0f; }, "min_p", "2");
    expect_rejected([](auto& p) { p.repetition_penalty = 0.0f; }, "repetition_penalty", "0");
    expect_rejected([](auto& p) { p.repetition_penalty = -1.0f; }, "repetition_penalty", "-1");
    expect_rejected([](auto& p) { p.repetition_penalty = kNaN; }, "repetition_penalty", "nan");
    expect_rejected([](auto& p) { p.frequency_penalty = 3.0f; }, "frequency_penalty", "3");
    expect_rejected([](auto& p) { p.presence_penalty = -kInf; }, "presence_penalty", "-inf");
    expect_rejected([](auto& p) { p.penalty_last_n = -2; }, "penalty_last_n", "-2");
}

}  // namespace
}  // namespace vela
