#pragma once
// A strict, incremental HTTP/1.x request parser. It sees raw bytes from a socket and yields one
// request at a time, or an error with the status to answer. Strict on purpose: behind a proxy,
// every leniency (a second Content-Length, Transfer-Encoding beside Content-Length, "+30" as a
// length, bare LF line ends, folded headers, control bytes in values) is a request-smuggling
// hole, so all of them are refused with 400 rather than guessed at.
//
// Limits are enforced while bytes arrive, never after buffering them: a request line longer
// than max_line is 414, a header section over max_header_bytes (or max_headers fields) is 431,
// a body over max_body is 413 as soon as its Content-Length (or the running total of its
// chunks) says so. Compressed bodies are refused (415): nothing here inflates data.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace vela::server {

struct HttpLimits {
    size_t max_line = 8192;            // request line, chunk-size line
    size_t max_header_bytes = 32768;   // the whole header section
    size_t max_headers = 100;          // header fields
    size_t max_body = size_t{8} << 20; // decoded body bytes
};

struct HttpRequest {
    std::string method;
    std::string target;
    int minor_version = 1;  // HTTP/1.<minor>
    // Names lower-cased, values without surrounding whitespace, in arrival order.
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
    bool keep_alive = true;
    bool expect_continue = false;  // "Expect: 100-continue" with a body to come

    // The first value of a header (name in lower case), or nullptr.
    const std::string* header(std::string_view name) const;
    // The target without its query string.
    std::string_view path() const;
};

class HttpRequestParser {
  public:
    enum class State {
        Head,  // reading the request line and headers
        Body,  // head complete (see request()), body bytes still to come
        Done,  // a whole request: take() it
        Error  // see error_status() / error_message(); the connection cannot be reused
    };

    explicit HttpRequestParser(HttpLimits limits = {}) : limits_(limits) {}

    // Consumes bytes and returns how many it used. Stops after the head (so the caller can
    // screen it before any body arrives) and after a whole request; bytes beyond a request
    // (pipelining) are left unconsumed for the next one.
    size_t feed(std::string_view data);

    State state() const { return state_; }
    bool started() const { return started_; }  // some byte of this request has arrived
    const HttpRequest& request() const { return request_; }  // valid from State::Body on
    HttpRequest take();  // State::Done: moves the request out and resets for the next one
    int error_status() const { return error_status_; }
    const std::string& error_message() const { return error_message_; }

  private:
    enum class BodyMode { None, Length, Chunked };
    enum class ChunkState { Size, Data, DataEnd, Trailer };

    size_t feed_head(std::string_view data);
    size_t feed_body(std::string_view data);
    size_t feed_chunked(std::string_view data);
    bool parse_head();
    bool parse_request_line(std::string_view line);
    bool parse_header_line(std::string_view line);
    bool check_semantics();
    bool take_line(std::string_view data, size_t& used, size_t limit, int status,
                   std::string_view& line);
    bool fail(int status, std::string message);

    HttpLimits limits_;
    State state_ = State::Head;
    bool started_ = false;
    HttpRequest request_;
    std::string head_;       // header section bytes so far
    size_t head_scan_ = 0;   // where the search for the blank line resumes
    BodyMode body_mode_ = BodyMode::None;
    uint64_t remaining_ = 0;  // body bytes left (Length) or chunk bytes left (Chunked)
    ChunkState chunk_state_ = ChunkState::Size;
    std::string line_;        // a chunk-size or trailer line being assembled
    size_t trailer_bytes_ = 0;
    int error_status_ = 0;
    std::string error_message_;
};

}  // namespace vela::server
