#pragma once
// llama-perplexity's logits file, written (--kl-divergence-base) and read back (--kl-divergence)
// so that Vela's distributions can be compared with llama.cpp's, or with Vela's own under
// another KV format or eviction policy, token by token.
//
// Format (llama.cpp's, documented by its source): "_logits_", int32 n_ctx, int32 n_vocab,
// int32 n_chunks, the int32 tokens of every chunk, then for each scored token of each chunk one
// record of 2*ceil(n_vocab/2) + 4 uint16: float scale, float minimum log-probability, then each
// token's log-probability quantised to 16 bits over the top 16 nats (below that: 0).
#include <cstdint>
#include <fstream>
#include <span>
#include <string>
#include <vector>

namespace vela::cli {

class KlDivergenceBase {
  public:
    KlDivergenceBase(const std::string& path, int64_t n_ctx, int64_t n_vocab,
                     std::span<const int32_t> tokens, int64_t n_chunks);
    // The next scored token's logits.
    void add(std::span<const float> logits);

  private:
    void put(int32_t v) { out_.write(reinterpret_cast<const char*>(&v), sizeof v); }

    std::ofstream out_;
    int64_t n_vocab_;
    std::vector<uint16_t> record_;
};

// Reads a base file and compares each scored token's distribution with it. InvalidArgument when
// the file is not one, or holds another vocabulary, context or text than this run.
class KlDivergenceReader {
  public:
    KlDivergenceReader(const std::string& path, int64_t n_ctx, int64_t n_vocab,
                       std::span<const int32_t> tokens, int64_t n_chunks);
    // The next scored token's logits and the token that follows it.
    void add(std::span<const float> logits, int32_t next);

    struct Result {
        int64_t n = 0;
        double kld_mean = 0, kld_sem = 0;  // KL(base || this run), nats, mean and its error
        double kld_p99 = 0;
        double same_top = 0;  // share of tokens whose most likely token agrees
        double ppl_base = 0;  // the base's perplexity on the same tokens
    };
    Result result() const;

  private:
    std::ifstream in_;
    std::string path_;
    int64_t n_vocab_;
    std::vector<uint16_t> record_;
    std::vector<double> kld_;
    int64_t same_top_ = 0;
    double nll_base_ = 0;
};

}  // namespace vela::cli
