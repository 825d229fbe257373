#pragma once
// A Llama-family decoder (Llama 1/2/3, Mistral, SmolLM, Qwen2) over paged KV, written once
// against the Backend interface.
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "gguf/gguf_file.h"
#include "kv/kv_cache.h"
#include "model/batch.h"
#include "model/hparams.h"
#include "model/weights.h"

namespace vela {

class Model {
  public:
    // Maps the file, reads hyper-parameters and binds the weights (FormatError on problems).
    explicit Model(const std::string& path);
    ~Model();
    Model(Model&&) noexcept;

    const HParams& hparams() const { return hp_; }
    const gguf::File& file() const { return file_; }
    const ModelWeights& weights() const { return weights_; }

    // Runs the batch through the network. Keys/values of the new tokens are written into `kv`
    // at batch.slots; logits (n_logit_rows x n_vocab, sequence order) are written to `logits`.
    void forward(const Batch& batch, KvCache& kv, Backend& backend, std::vector<float>& logits);

  private:
    struct Scratch;
    void layer(int64_t il, const Batch& batch, KvCache& kv, Backend& backend, Scratch& s);

    gguf::File file_;
    HParams hp_;
    ModelWeights weights_;
    std::unique_ptr<Scratch> scratch_;
};

}  // namespace vela
