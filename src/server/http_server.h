#pragma once
// The OpenAI-compatible HTTP front end: routes, bearer auth, body and queue limits, JSON
// errors. It never touches the Engine: generation goes through EngineService.
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "server/engine_service.h"
#include "server/metrics.h"
#include "server/openai_request.h"
#include "tokenizer/tokenizer.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace vela::server {

struct ServerOptions {
    std::string host = "127.0.0.1";
    int port = 8080;      // 0: any free port (see HttpServer::bind)
    std::string api_key;  // empty: no authentication
    size_t max_body_bytes = size_t{8} << 20;
    std::chrono::seconds timeout{600};  // whole request, generation included
    int http_threads = 64;              // concurrent connections being served
    std::string model_name = "vela";
    ProtocolLimits limits;
};

class HttpServer {
  public:
    HttpServer(ServerOptions options, const Tokenizer& tokenizer, EngineService& service,
               ServerMetrics& metrics);
    ~HttpServer();

    // Binds the listening socket and returns the port; vela::Error when it cannot.
    int bind();
    // Serves until stop() (from another thread); returns once in-flight handlers finished.
    void listen();
    void stop();

  private:
    void install_routes();
    void handle_generation(Endpoint endpoint, const httplib::Request& req, httplib::Response& res);

    ServerOptions options_;
    const Tokenizer& tokenizer_;
    EngineService& service_;
    ServerMetrics& metrics_;
    std::unique_ptr<httplib::Server> http_;
};

}  // namespace vela::server
