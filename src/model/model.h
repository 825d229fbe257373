#pragma once
// A Llama-family decoder (Llama 1/2/3, Mistral, SmolLM, Qwen2) or Gemma 3 over paged KV, written
// once against the Backend interface: it reads the step from a ForwardBatch and never touches KV
// bookkeeping.
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "gguf/gguf_file.h"
#include "kv/kv_storage.h"
#include "model/forward_batch.h"
#include "model/hparams.h"
#include "model/tensor_parallel.h"
#include "model/weights.h"

namespace vela {

class Model {
  public:
    // Maps the file, reads hyper-parameters and binds the weights (FormatError on problems).
    // With `comm` of more than one rank: this rank's tensor-parallel share of the model
    // (tensor_parallel.h; InvalidArgument for a split that cannot be made); its forwards run
    // in step with the other ranks', on the same batches.
    explicit Model(const std::string& path, Communicator* comm = nullptr);
    ~Model();
    Model(Model&&) noexcept;

    const HParams& hparams() const { return hp_; }
    // The shape this rank computes: hparams() but for the heads, kv heads and n_ff of its
    // tensor-parallel share (the same without one).
    const HParams& local_hparams() const { return local_; }
    const gguf::File& file() const { return file_; }
    const ModelWeights& weights() const { return weights_; }

    // The KV layout this model needs for `num_blocks` blocks of `block_size` tokens, with the
    // key offsets below. local_num_blocks > 0 (a model with sliding-window layers only): those
    // layers in a local group of that many blocks (KvLayout::local_layers).
    KvLayout kv_layout(int64_t block_size, int64_t num_blocks, int64_t local_num_blocks = 0) const;

    // KvLayout::key_offsets for this model: the part of every key that is the same at every
    // position, [n_layers][n_kv_heads][head_dim], or empty. Qwen2 adds a bias to its keys
    // before RoPE, tens to hundreds in a few channels where the rest are units; where RoPE turns
    // a channel pair by less than pi/3 over the trained context (or not at all, past rope.dim),
    // the bias stays about constant and is the offset; elsewhere the offset is 0. (Subtracting
    // a pair turned by angle a leaves |b| 2 sin(a / 2), below |b| for a < pi/3.)
    const std::vector<float>& key_offsets() const { return key_offsets_; }

    // Ranks in other processes: rank 0's model hands each forward and KV storage to them first
    // (tensor_parallel.h's StepBroadcast; null: none).
    void set_step_broadcast(StepBroadcast* broadcast) { broadcast_ = broadcast; }
    int tensor_parallel() const { return comm_ ? comm_->size() : 1; }
    // The KV pool for this model's forwards (backend.make_kv_storage, mirrored on the other
    // ranks' processes with a StepBroadcast). InvalidArgument for attention scores (H2O, TOVA)
    // under tensor parallelism: each rank would rank tokens by its own heads only.
    std::unique_ptr<KvStorage> make_kv_storage(Backend& backend, const KvLayout& layout,
                                               KvFormats formats) const;

    // Runs the batch through the network on `backend` (which gets the weights on first use).
    // Keys/values of the new rows are written into `kv` at batch.slot_mapping; logits of
    // batch.logit_rows (in that order, n_vocab each) are copied to `logits` on the host.
    void forward(const ForwardBatch& batch, KvStorage& kv, Backend& backend,
                 std::vector<float>& logits);

    // What each logits row sends back to the host (the `keep` of the forward below):
    static constexpr int32_t kKeepRow = 0;      // the whole row, into RowsOut::logits
    static constexpr int32_t kKeepArgmax = -1;  // only its argmax (every row's is in ids)
    // k > 0 (at most Backend::kMaxTopK): its k best tokens and their logits, ranked
    // (Backend::top_k_rows), into top_tokens / top_logits at row * top_k.
    struct RowsOut {
        std::vector<float> logits;  // n_vocab per row; rows not kept whole are left as they were
        std::vector<int32_t> ids;   // the argmax of every row (Backend::argmax_rows)
        int32_t top_k = 0;          // the largest k asked for this step; every row's stride
        std::vector<int32_t> top_tokens;
        std::vector<float> top_logits;
        // With forward's `lse`: each row kept as a top-k list, log(sum(exp(its logits))) before
        // its penalties (Backend::logsumexp_rows), for logprobs of the raw distribution.
        std::vector<double> lse;
    };
    // The same, with each row sending back what keep[row] says (empty: every row whole).
    // `penalties` (rows numbered as keep's) change the logits before the top-k lists are taken;
    // only rows kept as top-k lists may have them (an argmax is taken before them).
    void forward(const ForwardBatch& batch, KvStorage& kv, Backend& backend,
                 std::span<const int32_t> keep, RowsOut& out,
                 std::span<const LogitPenalty> penalties = {}, bool lse = false);

    // Copies logits row `row` of the last forward (numbered as its keep; a row without
    // penalties) into out.logits, whole: for a row sent back as a list that is sampled whole
    // after all (Sampler::sample_top found the list short).
    void fetch_row(Backend& backend, int64_t row, RowsOut& out);

  private:
    struct Scratch;
    void layer(int64_t il, KvStorage& kv, Backend& backend, Scratch& s);

    gguf::File file_;
    HParams hp_;
    Communicator* comm_ = nullptr;  // tensor parallel over more than one rank, else null
    StepBroadcast* broadcast_ = nullptr;
    HParams local_;
    int64_t vocab_begin_ = 0, vocab_end_ = 0;  // this rank's LM head rows
    ModelWeights weights_;
    std::vector<std::unique_ptr<std::byte[]>> owned_;  // weight slices copied out of the file
    std::vector<float> key_offsets_;
    std::vector<float> v_bias_heads_;  // the memory of every LayerWeights::bv_heads
    Backend* loaded_on_ = nullptr;     // the backend load_weights() ran for
    std::unique_ptr<Scratch> scratch_;
};

}  // namespace vela
