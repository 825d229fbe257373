#pragma once
// Turns a step's schedule into a flat Batch, runs the model, and hands back one logits row per
// sequence that samples this step.
#include <span>
#include <vector>

#include "backend/backend.h"
#include "engine/scheduler.h"
#include "model/model.h"

namespace vela {

class ModelRunner {
  public:
    ModelRunner(Model& model, Backend& backend) : model_(model), backend_(backend) {}

    // Runs the scheduled work. Afterwards, logits_for(i) is the logits row of scheduled[i]
    // when that sequence reached the end of its tokens this step (so it samples), else empty.
    void run(const std::vector<ScheduledSeq>& scheduled, KvCache& kv);
    std::span<float> logits_for(size_t i);

  private:
    Model& model_;
    Backend& backend_;
    Batch batch_;
    std::vector<float> logits_;
    std::vector<int64_t> logit_row_;  // per scheduled sequence, -1 when it does not sample
};

}  // namespace vela
