#pragma once
// The HTTP/1.1 transport: one epoll event loop thread owns every socket, so a slow or idle
// client costs a file descriptor and a few hundred bytes, never a thread. Requests are parsed
// strictly (http_parser.h), screened right after their head (authentication before any body
// is read), and handed to an HttpHandler: cheap ones run on the loop, the rest on a small
// worker pool. A handler answers with a Reply that the loop polls whenever the Reply's Waker
// is called (from any thread): this is how streamed tokens reach their socket without a thread
// blocked per stream.
//
// Every connection is watched for a hang-up while its request runs (EPOLLRDHUP and reads), so
// a client that goes away cancels its Reply at once, streamed or not. Deadlines: the head must
// arrive within header_timeout of the request's first byte, the body within body_timeout of
// the head, an idle keep-alive connection is closed after idle_timeout, and a reader that does
// not take its response for write_timeout is dropped. At max_connections, the oldest connection
// with no request in progress is closed to make room.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "server/http_parser.h"

namespace vela::server {

struct HttpResponse {
    int status = 200;
    std::string content_type = "application/json";
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
};

// The transport side of a Reply: a whole response, or a stream of body bytes.
class ReplySink {
  public:
    virtual ~ReplySink() = default;
    virtual void respond(const HttpResponse& response) = 0;
    virtual void start_stream(int status, std::string_view content_type,
                              const std::vector<std::pair<std::string, std::string>>& headers) = 0;
    virtual void send(std::string_view bytes) = 0;  // after start_stream
    virtual void end_stream() = 0;
};

// A response in the making. Polled on the loop thread: right away, whenever its Waker is
// called, and every tick (about 100 ms) so it can keep deadlines. It is done once it has
// called respond() or end_stream(). cancel() means the client is gone (or the server stops
// before the reply ended); the reply is destroyed right after.
class Reply {
  public:
    virtual ~Reply() = default;
    virtual void poll(ReplySink& sink) = 0;
    virtual void cancel() {}
};

// A reply known at once.
class FixedReply : public Reply {
  public:
    explicit FixedReply(HttpResponse response) : response_(std::move(response)) {}
    void poll(ReplySink& sink) override { sink.respond(response_); }

  private:
    HttpResponse response_;
};

// Thread-safe: asks the loop to poll one connection's reply. Outlives the server safely.
using Waker = std::function<void()>;

class HttpHandler {
  public:
    virtual ~HttpHandler() = default;
    // Loop thread, once a request's head is parsed and before its body is read: a response
    // here answers the request and closes the connection (the body is never read).
    virtual std::optional<HttpResponse> screen(const HttpRequest& head) = 0;
    // Whether handle() is cheap enough to run on the loop thread (health checks, metrics).
    virtual bool runs_inline(const HttpRequest& request) = 0;
    // Produces the reply; on a worker thread unless runs_inline. Exceptions become a 500.
    virtual std::unique_ptr<Reply> handle(HttpRequest request, Waker waker) = 0;
    // The body of a response the transport makes itself (parse errors, timeouts, 500).
    virtual HttpResponse error(int status, const std::string& message) = 0;
    // Loop thread: a response with this status is being sent (for metrics).
    virtual void on_response(int status) {}
};

struct HttpServerOptions {
    std::string host = "127.0.0.1";
    int port = 8080;  // 0: any free port (see HttpServer::bind)
    HttpLimits limits;
    int max_connections = 1024;
    int workers = 4;  // threads running handle() for requests that are not inline
    std::chrono::milliseconds header_timeout{10'000};
    std::chrono::milliseconds body_timeout{60'000};
    std::chrono::milliseconds idle_timeout{30'000};
    std::chrono::milliseconds write_timeout{30'000};
    // After stop(): how long replies still running may take to end before they are cut.
    std::chrono::milliseconds stop_grace{5'000};
};

class HttpServer {
  public:
    HttpServer(HttpServerOptions options, HttpHandler& handler);
    ~HttpServer();
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    // Binds the listening socket and returns the port; vela::Error when it cannot.
    int bind();
    // Runs the event loop until stop() and every reply in progress has ended (or stop_grace).
    void listen();
    // Thread-safe: stops accepting, lets replies in progress end, then returns from listen().
    void stop();

  private:
    class Loop;
    std::unique_ptr<Loop> loop_;
};

}  // namespace vela::server
