// `vela serve`: the OpenAI-compatible HTTP server: one Engine behind an EngineService, the
// OpenAI API in front of it, an HttpServer in front of that, and a graceful drain on SIGTERM.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <thread>

#include "core/error.h"
#include "server/engine_service.h"
#include "server/http_server.h"
#include "server/openai_api.h"
#include "tools/commands.h"
#include "tools/common.h"

namespace vela::cli {
namespace {

// The key from --api-key, else --api-key-file, else $VELA_API_KEY: a key on the command line is
// visible to every user in `ps`, the other two are not.
std::string resolve_api_key(const ServeOptions& o) {
    if (!o.api_key.empty()) return o.api_key;
    if (!o.api_key_file.empty()) {
        std::ifstream in(o.api_key_file);
        if (!in) fail<InvalidArgument>("cannot read the API key file {}", o.api_key_file);
        std::string key;
        std::getline(in, key);
        while (!key.empty() && (key.back() == '\r' || key.back() == ' ')) key.pop_back();
        if (key.empty()) fail<InvalidArgument>("the API key file {} is empty", o.api_key_file);
        return key;
    }
    const char* env = std::getenv("VELA_API_KEY");
    return env != nullptr ? env : "";
}

// SIGINT/SIGTERM are blocked in every thread (set before any is created) and taken here
// synchronously, so the drain runs as ordinary code rather than in a signal handler.
sigset_t shutdown_signals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    return set;
}

}  // namespace

int run_serve(const ServeOptions& o) {
    const sigset_t signals = shutdown_signals();
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);

    Runtime rt = Runtime::load(o.common);
    EngineConfig ec = rt.engine_config(
        o.common, /*fill_kv=*/o.kv_blocks == 0 && o.kv_cache_bytes == 0, o.parallel);
    if (o.kv_blocks > 0) ec.kv_blocks = o.kv_blocks;
    if (o.kv_cache_bytes > 0) {
        ec.kv_blocks = rt.kv_blocks_for(o.kv_cache_bytes, ec);
        if (ec.kv_blocks < 1) {
            fail<InvalidArgument>("--kv-cache-memory-bytes {} holds no KV block ({} bytes each)",
                                  o.kv_cache_bytes,
                                  rt.kv_bytes_per_token(ec) * static_cast<size_t>(ec.kv_block_size));
        }
    }
    std::unique_ptr<spec::Drafter> drafter = rt.make_drafter(o.spec, ec);
    Engine engine(*rt.model, *rt.tokenizer, *rt.backend, ec, std::move(drafter));

    server::ApiOptions api_options;
    api_options.api_key = resolve_api_key(o);
    api_options.model_name = o.model_name;
    server::ServerMetrics metrics;
    server::EngineService service(engine, {o.parallel, o.max_queue}, metrics);
    api_options.timeout = std::chrono::seconds(o.timeout_s);
    api_options.limits.n_ctx = ec.n_ctx;
    const int64_t capacity = engine.kv_blocks().num_total_blocks() * ec.kv_block_size;
    api_options.limits.max_prompt_tokens = std::min(ec.n_ctx, capacity) - 1;
    api_options.limits.n_vocab = rt.model->hparams().n_vocab;
    api_options.limits.max_n = o.max_n;
    server::HttpServerOptions http_options = o.http;
    http_options.header_timeout = std::chrono::seconds(o.header_timeout_s);
    http_options.idle_timeout = std::chrono::seconds(o.idle_timeout_s);
    server::OpenAiApi api(api_options, *rt.tokenizer, service, metrics);
    server::HttpServer http(http_options, api);
    const int port = http.bind();
    std::fprintf(stderr,
                 "vela serve: listening on http://%s:%d (model %s on %s, ctx %lld, parallel %lld, "
                 "KV pool %lld tokens)\n",
                 o.http.host.c_str(), port, o.model_name.c_str(), rt.backend->name().c_str(),
                 static_cast<long long>(ec.n_ctx), static_cast<long long>(o.parallel),
                 static_cast<long long>(capacity));
    if (ec.eviction.enabled()) {
        std::fprintf(stderr, "vela serve: KV eviction %s, budget %s per sequence%s\n",
                     std::string(eviction_policy_name(ec.eviction.policy)).c_str(),
                     o.common.kv_budget.c_str(),
                     ec.eviction.score_mode() != KvScoreMode::None ? " (prefix cache off)" : "");
    }

    std::thread waiter([&] {
        int sig = 0;
        sigwait(&signals, &sig);
        std::fprintf(stderr, "vela serve: %s, draining (up to %llds)\n", strsignal(sig),
                     static_cast<long long>(o.drain_s));
        service.drain(std::chrono::seconds(o.drain_s));
        http.stop();
    });
    http.listen();
    waiter.join();
    std::fprintf(stderr, "vela serve: stopped\n");
    return 0;
}

}  // namespace vela::cli
