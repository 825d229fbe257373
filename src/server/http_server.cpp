#include "server/http_server.h"

#include <httplib.h>

#include <atomic>
#include <ctime>
#include <thread>

#include "core/error.h"
#include "core/log.h"
#include "server/api_error.h"
#include "server/generation.h"

namespace vela::server {
namespace {

using nlohmann::json;

void send_error(httplib::Response& res, const ApiError& e) {
    res.status = e.status;
    if (e.status == 429) res.set_header("Retry-After", "1");
    res.set_content(dump_json(e.body()), "application/json");
}

// Compares without an early exit so response time does not leak how much of the key matched.
bool same_secret(const std::string& given, const std::string& key) {
    if (given.size() != key.size()) return false;
    unsigned diff = 0;
    for (size_t i = 0; i < key.size(); ++i) diff |= static_cast<unsigned char>(given[i] ^ key[i]);
    return diff == 0;
}

std::string response_id(Endpoint endpoint) {
    thread_local uint64_t state = std::hash<std::thread::id>{}(std::this_thread::get_id()) ^
                                  static_cast<uint64_t>(Clock::now().time_since_epoch().count());
    state =
        state * 6364136223846793005ull + 1442695040888963407ull;  // per-thread LCG: unique enough
    return fmt::format("{}-{:016x}", endpoint == Endpoint::Chat ? "chatcmpl" : "cmpl", state);
}

}  // namespace

HttpServer::HttpServer(ServerOptions options, const Tokenizer& tokenizer, EngineService& service,
                       ServerMetrics& metrics)
    : options_(std::move(options)),
      tokenizer_(tokenizer),
      service_(service),
      metrics_(metrics),
      http_(std::make_unique<httplib::Server>()) {
    const int threads = std::max(options_.http_threads, 4);
    http_->new_task_queue = [threads] {
        return new httplib::ThreadPool(static_cast<size_t>(threads));
    };
    http_->set_payload_max_length(options_.max_body_bytes);
    http_->set_read_timeout(std::chrono::seconds(30));
    http_->set_write_timeout(std::chrono::seconds(30));
    install_routes();
}

HttpServer::~HttpServer() = default;

int HttpServer::bind() {
    int port = options_.port;
    if (port == 0) {
        port = http_->bind_to_any_port(options_.host);
    } else if (!http_->bind_to_port(options_.host, port)) {
        port = -1;
    }
    if (port < 0) fail<Error>("cannot listen on {}:{}", options_.host, options_.port);
    return port;
}

void HttpServer::listen() {
    http_->listen_after_bind();
}

void HttpServer::stop() {
    http_->stop();
}

void HttpServer::install_routes() {
    httplib::Server& s = *http_;
    s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
        if (options_.api_key.empty() || req.path == "/health")
            return httplib::Server::HandlerResponse::Unhandled;
        const std::string auth = req.get_header_value("Authorization");
        const std::string prefix = "Bearer ";
        if (auth.rfind(prefix, 0) == 0 &&
            same_secret(auth.substr(prefix.size()), options_.api_key)) {
            return httplib::Server::HandlerResponse::Unhandled;
        }
        send_error(res, ApiError(401, "Incorrect or missing API key (Authorization: Bearer <key>)",
                                 "invalid_request_error", "", "invalid_api_key"));
        return httplib::Server::HandlerResponse::Handled;
    });
    s.set_error_handler(
        httplib::Server::HandlerWithResponse([](const httplib::Request&, httplib::Response& res) {
            if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
            const std::string msg = res.status == 404   ? "no such endpoint"
                                    : res.status == 413 ? "the request body is too large"
                                                        : fmt::format("HTTP error {}", res.status);
            send_error(res, ApiError(res.status, msg,
                                     res.status >= 500 ? "server_error" : "invalid_request_error"));
            return httplib::Server::HandlerResponse::Handled;
        }));
    s.set_exception_handler(
        [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
            std::string msg = "internal error";
            try {
                std::rethrow_exception(ep);
            } catch (const std::exception& e) {
                msg = e.what();
            } catch (...) {
            }
            log(LogLevel::Error, "handler failed: {}", msg);
            send_error(res, ApiError(500, msg, "server_error"));
        });
    s.set_logger([this](const httplib::Request&, const httplib::Response& res) {
        metrics_.count_response(res.status);
    });

    s.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
        res.set_content(
            dump_json({{"status", "ok"}, {"requests_in_flight", service_.outstanding()}}),
            "application/json");
    });
    s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
        res.set_content(metrics_.render(service_.stats()), "text/plain; version=0.0.4");
    });
    s.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
        const json model = {{"id", options_.model_name},
                            {"object", "model"},
                            {"created", 0},
                            {"owned_by", "vela"},
                            {"meta", {{"n_ctx", options_.limits.n_ctx}}}};
        res.set_content(dump_json({{"object", "list"}, {"data", json::array({model})}}),
                        "application/json");
    });
    auto generate = [this](Endpoint endpoint) {
        return [this, endpoint](const httplib::Request& req, httplib::Response& res) {
            handle_generation(endpoint, req, res);
        };
    };
    s.Post("/v1/completions", generate(Endpoint::Completions));
    s.Post("/v1/chat/completions", generate(Endpoint::Chat));
}

void HttpServer::handle_generation(Endpoint endpoint, const httplib::Request& req,
                                   httplib::Response& res) {
    const Clock::time_point deadline = Clock::now() + options_.timeout;
    try {
        json body;
        try {
            body = json::parse(req.body);
        } catch (const json::parse_error& e) {
            throw ApiError(400, fmt::format("the body is not valid JSON: {}", e.what()));
        }
        GenerationSpec spec = parse_generation_request(endpoint, body, tokenizer_, options_.limits);
        ResponseMeta meta{response_id(endpoint), static_cast<int64_t>(std::time(nullptr)),
                          spec.model.empty() ? options_.model_name : spec.model};
        if (!spec.stream) {
            res.set_content(dump_json(run_to_completion(service_, spec, meta, deadline, metrics_)),
                            "application/json");
            return;
        }
        auto channel = start_generation(service_, spec, deadline);
        auto stream = std::make_shared<SseStream>(service_, std::move(spec), std::move(meta),
                                                  std::move(channel), deadline, metrics_);
        res.set_header("Cache-Control", "no-cache");
        res.set_chunked_content_provider(
            "text/event-stream",
            [stream](size_t, httplib::DataSink& sink) {
                bool done = false;
                const std::string events = stream->next(done);
                // A failed write means the client hung up: returning false ends the response,
                // and releasing the stream cancels the generation.
                if (!events.empty() && !sink.write(events.data(), events.size())) return false;
                if (done) sink.done();
                return true;
            },
            [stream](bool) mutable { stream.reset(); });
    } catch (const ApiError& e) {
        send_error(res, e);
    }
}

}  // namespace vela::server
