// `vela serve`: the OpenAI-compatible HTTP server. Flags follow llama-server where they overlap
// (--host, --port, -m, -t, -c, -np/--parallel, --api-key, --timeout).
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <thread>

#include <cstdlib>
#include <fstream>

#include "core/error.h"
#include "server/engine_service.h"
#include "server/http_server.h"
#include "server/openai_api.h"
#include "tools/commands.h"
#include "tools/common.h"

namespace vela::cli {
namespace {

struct ServeOptions {
    CommonOptions common;
    server::HttpServerOptions http;
    server::ApiOptions api;
    std::string api_key_file;
    int64_t parallel = 16;
    int64_t kv_blocks = 0;
    int64_t max_queue = 256;
    int64_t timeout_s = 600;
    int64_t drain_s = 10;
    int max_n = 16;
    int64_t header_timeout_s = 10;
    int64_t idle_timeout_s = 30;
};

// The key from --api-key, else --api-key-file, else $VELA_API_KEY: a key on the command line is
// visible to every user in `ps`, the other two are not.
std::string resolve_api_key(const ServeOptions& o) {
    if (!o.api.api_key.empty()) return o.api.api_key;
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

int run_serve(ServeOptions& o) {
    const sigset_t signals = shutdown_signals();
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);

    Runtime rt = Runtime::load(o.common);
    EngineConfig ec = rt.engine_config(o.common);
    ec.kv_blocks = o.kv_blocks;
    ec.scheduler.max_running = o.parallel;
    Engine engine(*rt.model, *rt.tokenizer, *rt.backend, ec);

    o.api.api_key = resolve_api_key(o);
    server::ServerMetrics metrics;
    server::EngineService service(engine, {o.parallel, o.max_queue}, metrics);
    o.api.timeout = std::chrono::seconds(o.timeout_s);
    o.api.limits.n_ctx = ec.n_ctx;
    const int64_t capacity = engine.kv_cache().num_total_blocks() * ec.kv_block_size;
    o.api.limits.max_prompt_tokens = std::min(ec.n_ctx, capacity) - 1;
    o.api.limits.n_vocab = rt.model->hparams().n_vocab;
    o.api.limits.max_n = o.max_n;
    o.http.header_timeout = std::chrono::seconds(o.header_timeout_s);
    o.http.idle_timeout = std::chrono::seconds(o.idle_timeout_s);
    server::OpenAiApi api(o.api, *rt.tokenizer, service, metrics);
    server::HttpServer http(o.http, api);
    const int port = http.bind();
    std::fprintf(stderr,
                 "vela serve: listening on http://%s:%d (model %s, ctx %lld, parallel %lld)\n",
                 o.http.host.c_str(), port, o.api.model_name.c_str(),
                 static_cast<long long>(ec.n_ctx), static_cast<long long>(o.parallel));

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

}  // namespace

void rewrite_llama_server_flags(std::vector<std::string>& args) {
    for (std::string& a : args) {
        if (a == "-np") a = "--parallel";
    }
}

void register_serve(CLI::App& app) {
    auto o = std::make_shared<ServeOptions>();
    CLI::App* cmd = app.add_subcommand("serve",
                                       "OpenAI-compatible HTTP server (/v1/completions, "
                                       "/v1/chat/completions, /v1/models, /health, /metrics)");
    add_common_options(*cmd, o->common);
    cmd->add_option("--host", o->http.host, "address to listen on")->capture_default_str();
    cmd->add_option("--port", o->http.port, "port (0: any free port)")
        ->check(CLI::Range(0, 65535))
        ->capture_default_str();
    cmd->add_option("--parallel", o->parallel, "max sequences decoded together (also -np)")
        ->check(CLI::Range(int64_t{1}, int64_t{4096}))
        ->capture_default_str();
    cmd->add_option("--api-key", o->api.api_key,
                    "require Authorization: Bearer <key> (also --api-key-file, $VELA_API_KEY)");
    cmd->add_option("--api-key-file", o->api_key_file, "read the API key from the file's first line");
    cmd->add_option("--kv-blocks", o->kv_blocks,
                    "KV cache blocks of 16 tokens (0: one full context)")
        ->check(CLI::Range(int64_t{0}, int64_t{1} << 24))
        ->capture_default_str();
    cmd->add_option("--max-queue", o->max_queue, "requests waiting beyond --parallel before 429")
        ->check(CLI::Range(int64_t{0}, int64_t{1} << 20))
        ->capture_default_str();
    cmd->add_option("--timeout", o->timeout_s, "request timeout in seconds")
        ->check(CLI::Range(int64_t{1}, int64_t{1} << 20))
        ->capture_default_str();
    cmd->add_option("--drain-timeout", o->drain_s,
                    "seconds in-flight requests may finish after SIGTERM")
        ->check(CLI::Range(int64_t{0}, int64_t{3600}))
        ->capture_default_str();
    cmd->add_option("--max-body", o->http.limits.max_body, "largest accepted request body in bytes")
        ->check(CLI::Range(size_t{1}, size_t{1} << 32))
        ->capture_default_str();
    cmd->add_option("--header-timeout", o->header_timeout_s,
                    "seconds a client may take to send a request's head")
        ->check(CLI::Range(int64_t{1}, int64_t{3600}))
        ->capture_default_str();
    cmd->add_option("--idle-timeout", o->idle_timeout_s,
                    "seconds an idle keep-alive connection stays open")
        ->check(CLI::Range(int64_t{1}, int64_t{3600}))
        ->capture_default_str();
    cmd->add_option("--max-connections", o->http.max_connections,
                    "open connections; at the limit the oldest idle one is closed")
        ->check(CLI::Range(16, 1 << 20))
        ->capture_default_str();
    cmd->add_option("--max-n", o->max_n, "largest n (choices per request)")
        ->check(CLI::Range(1, 128))
        ->capture_default_str();
    cmd->add_option("-a,--alias", o->api.model_name, "model name reported by the API")
        ->capture_default_str();
    cmd->callback([o] { throw CLI::RuntimeError(run_guarded([o] { return run_serve(*o); })); });
}

}  // namespace vela::cli
