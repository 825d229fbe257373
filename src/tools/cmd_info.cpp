// `vela info`: what a GGUF file holds, without running it.
#include <fmt/format.h>

#include <map>

#include "gguf/gguf_file.h"
#include "model/hparams.h"
#include "tools/commands.h"
#include "tools/common.h"

namespace vela::cli {

int run_info(const InfoOptions& o) {
    const std::string path = o.model.empty() ? default_model_path() : o.model;
    const gguf::File f = gguf::File::open(path);
    fmt::print("file:          {} ({:.1f} MiB, GGUF v{})\n", path, f.size() / 1048576.0,
               f.version());
    const HParams hp = HParams::from_gguf(f);
    fmt::print("architecture:  {} ({})\n", hp.arch, f.get_string("general.name").value_or("?"));
    fmt::print("layers:        {}\nembedding:     {}\nffn:           {}\n", hp.n_layers, hp.n_embd,
               hp.n_ff);
    fmt::print("heads:         {} query, {} key/value (GQA {}:1), head dim {}\n", hp.n_heads,
               hp.n_kv_heads, hp.n_heads / hp.n_kv_heads, hp.head_dim);
    fmt::print("rope:          theta {}, {} dims, {} layout\n", hp.rope.theta, hp.rope.dim,
               hp.rope.neox ? "NeoX" : "normal");
    fmt::print("context:       {} (training)\nvocabulary:    {}\n", hp.n_ctx_train, hp.n_vocab);

    std::map<std::string, std::pair<int, size_t>> by_type;
    int64_t params = 0;
    for (const auto& t : f.tensors()) {
        auto& [count, bytes] = by_type[std::string(dtype_name(t.type))];
        ++count;
        bytes += t.nbytes;
        params += t.n_elements();
    }
    fmt::print("parameters:    {:.1f} M\ntensor types: ", params / 1e6);
    for (const auto& [name, cb] : by_type) {
        fmt::print(" {} x{} ({:.1f} MiB)", name, cb.first, cb.second / 1048576.0);
    }
    fmt::print("\n");
    const Tokenizer tok = Tokenizer::from_gguf(f);
    fmt::print("tokenizer:     {} / pre-tokenizer {}, {} tokens, BOS {} ({}), EOS {} ({})\n",
               f.get_string("tokenizer.ggml.model").value_or("?"),
               f.get_string("tokenizer.ggml.pre").value_or("default"), tok.vocab_size(), tok.bos(),
               tok.bos() >= 0 ? tok.token_text(tok.bos()) : "-", tok.eos(),
               tok.eos() >= 0 ? tok.token_text(tok.eos()) : "-");
    const std::string& tmpl = tok.chat_template();
    fmt::print("chat template: {}\n", tmpl.empty() ? "(none: ChatML is used)" : tmpl);
    if (o.all_metadata) {
        for (const auto& [key, value] : f.metadata())
            fmt::print("  {} = {}\n", key, gguf::describe(value));
    }
    return 0;
}

}  // namespace vela::cli
