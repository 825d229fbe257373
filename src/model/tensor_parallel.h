#pragma once
// Tensor parallelism (Megatron-style) inside the one model definition. Rank r of N holds a slice
// of every layer; the ranks' partial results meet in an all-reduce after each row-parallel
// matmul (Communicator):
//   - attention: query heads [h0, h1) and the kv heads they read (a kv head is replicated on
//     each rank of its group when there are fewer kv heads than ranks): wq / wk / wv and their
//     biases column-parallel (output rows sliced), wo row-parallel (input columns sliced);
//   - feed-forward: a slice of n_ff, gate / up column-parallel, down row-parallel; the slice
//     boundaries fall on down's quantisation blocks, so each rank's columns are whole blocks
//     (slices may differ by a block);
//   - LM head vocabulary-parallel (rows of output.weight), the logits gathered on every rank.
// The token embedding stays whole on every rank (a lookup: its memory, not its time).
#include <barrier>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "backend/logit_penalty.h"
#include "core/error.h"
#include "core/tensor.h"
#include "kv/kv_storage.h"
#include "model/forward_batch.h"
#include "model/hparams.h"
#include "model/weights.h"

namespace vela {

class Backend;

// The collectives of a tensor-parallel forward, between the ranks of one model. Tensors are float
// activations in the backend's memory.
class Communicator {
  public:
    virtual ~Communicator() = default;
    virtual int rank() const = 0;
    virtual int size() const = 0;
    // x (the same shape on every rank) becomes the sum over the ranks: the same bits on every
    // rank.
    virtual void all_reduce_sum(Backend& backend, Tensor x) = 0;
    // Each rank's `local` (rows x its columns) into its columns of `full` (rows x the sum of the
    // ranks' columns, rank order), on every rank.
    virtual void all_gather_cols(Backend& backend, const Tensor& local, Tensor full) = 0;
};

// A tensor-parallel group that cannot go on: a rank stopped (it died, or its step failed), so the
// collectives of the others would wait for it forever. Every later collective of the group throws
// it too.
class GroupFailed : public Error {
  public:
    using Error::Error;
};

// Rank 0 of a group whose other ranks are processes (engine/tp_workers.h): Model hands it each
// forward, and the KV storages it makes, before running them, so that the other ranks run the
// same steps on their shares.
class StepBroadcast {
  public:
    virtual ~StepBroadcast() = default;
    // A KV storage of rank 0 (in `backend`) that the other ranks mirror with their own heads'
    // share: every BlockOp applied to it is applied to theirs.
    virtual std::unique_ptr<KvStorage> make_kv_storage(Backend& backend, const KvLayout& layout,
                                                       KvFormats formats) = 0;
    // Hands the other ranks one forward of Model::forward's arguments; returns rank 0's own
    // storage behind `kv` (one make_kv_storage made), for the backend's ops.
    virtual KvStorage& forward(const ForwardBatch& batch, KvStorage& kv,
                               std::span<const int32_t> keep,
                               std::span<const LogitPenalty> penalties, bool lse) = 0;
};

// N ranks as threads of one process over host memory (CPU backends): each thread runs its rank's
// forward; a collective waits for all of them. Sums are taken in rank order, so every rank gets
// the same bits.
class ThreadGroup {
  public:
    explicit ThreadGroup(int size);
    ~ThreadGroup();
    // The communicator of rank r (owned by the group).
    Communicator& rank(int r);
    int size() const { return static_cast<int>(ranks_.size()); }

  private:
    class Rank;
    std::barrier<> barrier_;
    std::vector<Tensor> published_;  // each rank's operand of the current collective
    std::vector<std::unique_ptr<Rank>> ranks_;
};

// One rank's share of a model: the weights it holds (views into the file, or copies where a
// slice is not contiguous: wo's and down's columns) and the shape it computes.
struct TpShard {
    HParams local;  // n_heads, n_kv_heads, n_ff of this rank; everything else as the model's
    int64_t vocab_begin = 0, vocab_end = 0;  // LM head rows [begin, end)
    ModelWeights weights;
    std::vector<std::unique_ptr<std::byte[]>> owned;  // the copied slices
};

// Rank `rank` of `size`'s share of (hp, w). size 1 returns the model unchanged. InvalidArgument
// for a split that cannot be made: query heads not divisible by the ranks, kv heads neither
// divisible by the ranks nor dividing them, or a row-parallel weight whose columns cannot be
// cut at whole quantisation blocks on head / n_ff boundaries.
TpShard shard_model(const HParams& hp, const ModelWeights& w, int rank, int size);

}  // namespace vela
