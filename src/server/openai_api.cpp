#include "server/openai_api.h"

#include <fmt/format.h>

#include <ctime>
#include <thread>

#include "server/api_error.h"
#include "server/generation.h"
#include "server/json_limits.h"

namespace vela::server {
namespace {

using nlohmann::json;

struct Route {
    std::string_view path;
    std::string_view method;
};
constexpr Route kRoutes[] = {{"/health", "GET"},
                             {"/metrics", "GET"},
                             {"/v1/models", "GET"},
                             {"/v1/completions", "POST"},
                             {"/v1/chat/completions", "POST"}};

// 404 for an unknown path, 405 for a known one with another method; nullopt when routable.
std::optional<ApiError> route_error(const HttpRequest& head) {
    bool known = false;
    for (const Route& r : kRoutes) {
        if (r.path != head.path()) continue;
        known = true;
        if (r.method == head.method) return std::nullopt;
    }
    if (known) return ApiError(405, "method not allowed", "invalid_request_error");
    return ApiError(404, "no such endpoint", "invalid_request_error");
}

// Runs in time that depends only on the length of what the client sent, never on how much of
// the key it matched or on the key's length.
bool same_secret(std::string_view given, std::string_view key) {
    unsigned diff = given.size() == key.size() ? 0u : 1u;
    for (size_t i = 0; i < given.size(); ++i) {
        diff |= static_cast<unsigned char>(given[i]) ^
                static_cast<unsigned char>(key.empty() ? 0 : key[i % key.size()]);
    }
    return diff == 0;
}

std::string response_id(Endpoint endpoint) {
    thread_local uint64_t state = std::hash<std::thread::id>{}(std::this_thread::get_id()) ^
                                  static_cast<uint64_t>(Clock::now().time_since_epoch().count());
    state = state * 6364136223846793005ull + 1442695040888963407ull;  // per-thread LCG
    return fmt::format("{}-{:016x}", endpoint == Endpoint::Chat ? "chatcmpl" : "cmpl", state);
}

std::unique_ptr<Reply> fixed(HttpResponse response) {
    return std::make_unique<FixedReply>(std::move(response));
}

}  // namespace

OpenAiApi::OpenAiApi(ApiOptions options, const Tokenizer& tokenizer, EngineService& service,
                     ServerMetrics& metrics)
    : options_(std::move(options)), tokenizer_(tokenizer), service_(service), metrics_(metrics) {}

bool OpenAiApi::authorized(const HttpRequest& head) const {
    if (options_.api_key.empty() || head.path() == "/health") return true;
    const std::string* auth = head.header("authorization");
    constexpr std::string_view prefix = "Bearer ";
    if (auth == nullptr || auth->compare(0, prefix.size(), prefix) != 0) return false;
    return same_secret(std::string_view(*auth).substr(prefix.size()), options_.api_key);
}

std::optional<HttpResponse> OpenAiApi::screen(const HttpRequest& head) {
    if (!authorized(head)) {
        return error_response(ApiError(401,
                                       "Incorrect or missing API key (Authorization: Bearer <key>)",
                                       "invalid_request_error", "", "invalid_api_key"));
    }
    if (std::optional<ApiError> e = route_error(head)) {
        HttpResponse r = error_response(*e);
        if (e->status == 405) {
            for (const Route& route : kRoutes) {
                if (route.path == head.path()) r.headers.emplace_back("Allow", route.method);
            }
        }
        return r;
    }
    return std::nullopt;
}

bool OpenAiApi::runs_inline(const HttpRequest& request) {
    return request.method == "GET";
}

HttpResponse OpenAiApi::error(int status, const std::string& message) {
    const char* type = status == 408 ? "timeout" : status >= 500 ? "server_error"
                                                                 : "invalid_request_error";
    return error_response(ApiError(status, message, type));
}

std::unique_ptr<Reply> OpenAiApi::handle(HttpRequest request, Waker waker) {
    const std::string_view path = request.path();
    if (path == "/health") {
        if (const std::string why = service_.failure(); !why.empty())
            return fixed(json_response(503, {{"status", "failed"}, {"error", why}}));
        if (!service_.accepting()) return fixed(json_response(503, {{"status", "draining"}}));
        return fixed(json_response(
            200, {{"status", "ok"}, {"requests_in_flight", service_.outstanding()}}));
    }
    if (path == "/metrics") {
        HttpResponse r;
        r.content_type = "text/plain; version=0.0.4";
        r.body = metrics_.render(service_.stats());
        return fixed(std::move(r));
    }
    if (path == "/v1/models") {
        const json model = {{"id", options_.model_name},
                            {"object", "model"},
                            {"created", 0},
                            {"owned_by", "vela"},
                            {"meta", {{"n_ctx", options_.limits.n_ctx}}}};
        return fixed(json_response(200, {{"object", "list"}, {"data", json::array({model})}}));
    }
    const Endpoint endpoint = path == "/v1/chat/completions" ? Endpoint::Chat
                                                             : Endpoint::Completions;
    try {
        return generate(endpoint, request, std::move(waker));
    } catch (const ApiError& e) {
        return fixed(error_response(e));
    }
}

std::unique_ptr<Reply> OpenAiApi::generate(Endpoint endpoint, const HttpRequest& request,
                                           Waker waker) {
    const Clock::time_point deadline = Clock::now() + options_.timeout;
    const json body = parse_json_body(request.body, options_.max_json_depth);
    GenerationSpec spec = parse_generation_request(endpoint, body, tokenizer_, options_.limits);
    ResponseMeta meta{response_id(endpoint), static_cast<int64_t>(std::time(nullptr)),
                      spec.model.empty() ? options_.model_name : spec.model};
    return std::make_unique<GenerationReply>(service_, std::move(spec), std::move(meta), deadline,
                                             metrics_, std::move(waker));
}

}  // namespace vela::server
