#pragma once
// The OpenAI-compatible API on top of the HTTP transport: routes, bearer authentication
// (checked on the request head, before any body is read), JSON errors, and generation
// requests turned into GenerationReplies. It never touches the Engine: generation goes
// through EngineService.
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "server/engine_service.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/openai_request.h"
#include "tokenizer/tokenizer.h"

namespace vela::server {

struct ApiOptions {
    std::string api_key;                // empty: no authentication
    std::chrono::seconds timeout{600};  // whole request, generation included
    std::string model_name = "vela";
    int max_json_depth = 64;  // nesting of the request body, checked before parsing
    ProtocolLimits limits;
};

class OpenAiApi : public HttpHandler {
  public:
    OpenAiApi(ApiOptions options, const Tokenizer& tokenizer, EngineService& service,
              ServerMetrics& metrics);

    std::optional<HttpResponse> screen(const HttpRequest& head) override;
    bool runs_inline(const HttpRequest& request) override;
    std::unique_ptr<Reply> handle(HttpRequest request, Waker waker) override;
    HttpResponse error(int status, const std::string& message) override;
    void on_response(int status) override { metrics_.count_response(status); }

  private:
    bool authorized(const HttpRequest& head) const;
    std::unique_ptr<Reply> generate(Endpoint endpoint, const HttpRequest& request, Waker waker);

    ApiOptions options_;
    const Tokenizer& tokenizer_;
    EngineService& service_;
    ServerMetrics& metrics_;
};

}  // namespace vela::server
