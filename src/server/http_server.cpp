#include "server/http_server.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "core/error.h"
#include "core/log.h"

namespace vela::server {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr auto kTick = 100ms;
constexpr auto kLinger = 2s;  // after our last byte, how long a closing client may keep sending
// A reply whose reader lags this far behind is not polled until the backlog drains.
constexpr size_t kMaxPendingOutput = size_t{4} << 20;
// Pipelined bytes buffered while a request runs; beyond this the socket is not read (a
// hang-up is still seen through EPOLLRDHUP).
constexpr size_t kMaxBufferedInput = size_t{1} << 20;

const char* reason_phrase(int status) {
    switch (status) {
        case 100: return "Continue";
        case 200: return "OK";
        case 400: return "Bad Request";
        case 401: return "Unauthorized";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 408: return "Request Timeout";
        case 413: return "Content Too Large";
        case 414: return "URI Too Long";
        case 415: return "Unsupported Media Type";
        case 417: return "Expectation Failed";
        case 429: return "Too Many Requests";
        case 431: return "Request Header Fields Too Large";
        case 500: return "Internal Server Error";
        case 501: return "Not Implemented";
        case 503: return "Service Unavailable";
        case 505: return "HTTP Version Not Supported";
        default: return status < 400 ? "OK" : status < 500 ? "Bad Request" : "Server Error";
    }
}

// Calls from other threads into the loop: replies that finished on a worker and connections
// whose reply has news. Shared with every Waker, so a late wake after shutdown is harmless.
class Mailbox {
  public:
    Mailbox() : fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
        if (fd_ < 0) fail<Error>("eventfd: {}", std::strerror(errno));
    }
    ~Mailbox() { ::close(fd_); }
    int fd() const { return fd_; }

    void wake(uint64_t id) {
        {
            std::lock_guard lock(mu_);
            if (closed_) return;
            woken_.push_back(id);
        }
        signal();
    }
    void deliver(uint64_t id, std::unique_ptr<Reply> reply) {
        {
            std::lock_guard lock(mu_);
            if (!closed_) {
                done_.emplace_back(id, std::move(reply));
                reply = nullptr;
            }
        }
        if (reply) {
            reply->cancel();  // the loop is gone: nobody will send it
            return;
        }
        signal();
    }
    void signal() {
        const uint64_t one = 1;
        [[maybe_unused]] const ssize_t n = ::write(fd_, &one, sizeof one);
    }
    void take(std::vector<uint64_t>& woken,
              std::vector<std::pair<uint64_t, std::unique_ptr<Reply>>>& done) {
        uint64_t count = 0;
        [[maybe_unused]] const ssize_t n = ::read(fd_, &count, sizeof count);
        std::lock_guard lock(mu_);
        woken.swap(woken_);
        done.swap(done_);
    }
    void close() {
        std::vector<std::pair<uint64_t, std::unique_ptr<Reply>>> done;
        {
            std::lock_guard lock(mu_);
            closed_ = true;
            done.swap(done_);
        }
        for (auto& [id, reply] : done) reply->cancel();
    }

  private:
    int fd_;
    std::mutex mu_;
    bool closed_ = false;
    std::vector<uint64_t> woken_;
    std::vector<std::pair<uint64_t, std::unique_ptr<Reply>>> done_;
};

// Runs handler calls that may take a while (JSON parsing, tokenisation) off the loop thread.
class WorkerPool {
  public:
    explicit WorkerPool(int n) {
        for (int i = 0; i < std::max(n, 1); ++i) threads_.emplace_back([this] { run(); });
    }
    ~WorkerPool() {
        {
            std::lock_guard lock(mu_);
            stop_ = true;
        }
        cv_.notify_all();
        for (std::thread& t : threads_) t.join();
    }
    void post(std::function<void()> job) {
        {
            std::lock_guard lock(mu_);
            jobs_.push_back(std::move(job));
        }
        cv_.notify_one();
    }

  private:
    void run() {
        for (;;) {
            std::function<void()> job;
            {
                std::unique_lock lock(mu_);
                cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
                if (jobs_.empty()) return;  // stopping, and every job has run
                job = std::move(jobs_.front());
                jobs_.pop_front();
            }
            job();
        }
    }

    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::function<void()>> jobs_;
    bool stop_ = false;
    std::vector<std::thread> threads_;
};

struct Connection {
    enum class Phase {
        Reading,   // parsing a request, or idle between requests
        Working,   // the request is on a worker; no reply yet
        Replying,  // a reply is attached and polled
        Lingering  // our last byte is out and the write side shut: draining until EOF
    };

    uint64_t id = 0;
    int fd = -1;
    Phase phase = Phase::Reading;
    HttpRequestParser parser;
    std::string in;  // received, not yet parsed
    size_t in_pos = 0;
    std::string out;  // to send
    size_t out_pos = 0;
    std::unique_ptr<Reply> reply;
    bool screened = false;     // the current request's head went through screen()
    bool keep_alive = true;    // of the current request
    bool http10 = false;
    bool streamed = false;     // the reply streams (chunked, or close-delimited for HTTP/1.0)
    bool reply_done = false;
    bool close_after = false;  // close once `out` is sent
    bool dead = false;
    bool processing = false;  // inside process_input (pipelined requests loop there, not recurse)
    uint32_t interest = 0;  // epoll events registered now
    bool heard_from = false;          // any byte received since the accept
    Clock::time_point request_start;  // first byte of the request being read
    Clock::time_point head_done;
    Clock::time_point last_activity;  // accept, or the end of the last response
    Clock::time_point last_write;     // the last time bytes left (or output started waiting)
    Clock::time_point linger_until;

    size_t pending_out() const { return out.size() - out_pos; }
};

}  // namespace

class HttpServer::Loop {
  public:
    Loop(HttpServerOptions options, HttpHandler& handler)
        : options_(std::move(options)),
          handler_(handler),
          mailbox_(std::make_shared<Mailbox>()),
          pool_(options_.workers) {
        epoll_ = epoll_create1(EPOLL_CLOEXEC);
        if (epoll_ < 0) fail<Error>("epoll_create1: {}", std::strerror(errno));
        add_fd(mailbox_->fd(), EPOLLIN, kMailboxKey);
    }
    ~Loop() {
        mailbox_->close();
        for (auto& [id, c] : conns_) close_now(*c);
        if (listen_fd_ >= 0) ::close(listen_fd_);
        ::close(epoll_);
    }

    int bind();
    void run();
    void request_stop() {
        stop_requested_ = true;
        mailbox_->signal();
    }

    // ReplySink for one connection.
    class Sink : public ReplySink {
      public:
        Sink(Loop& loop, Connection& c) : loop_(loop), c_(c) {}
        void respond(const HttpResponse& r) override {
            if (c_.reply_done || c_.streamed) return;
            loop_.append_head(c_, r.status, r.content_type, r.headers, r.body.size());
            c_.out += r.body;
            c_.reply_done = true;
        }
        void start_stream(int status, std::string_view content_type,
                          const std::vector<std::pair<std::string, std::string>>& headers) override {
            if (c_.reply_done || c_.streamed) return;
            c_.streamed = true;
            loop_.append_head(c_, status, content_type, headers, std::nullopt);
        }
        void send(std::string_view bytes) override {
            if (!c_.streamed || c_.reply_done || bytes.empty()) return;
            if (c_.http10) {
                c_.out += bytes;
            } else {
                c_.out += fmt::format("{:x}\r\n", bytes.size());
                c_.out += bytes;
                c_.out += "\r\n";
            }
        }
        void end_stream() override {
            if (!c_.streamed || c_.reply_done) return;
            if (!c_.http10) c_.out += "0\r\n\r\n";
            c_.reply_done = true;
        }

      private:
        Loop& loop_;
        Connection& c_;
    };

  private:
    static constexpr uint64_t kListenKey = 0;
    static constexpr uint64_t kMailboxKey = 1;

    void add_fd(int fd, uint32_t events, uint64_t key);
    void accept_all();
    bool evict_idle();
    void on_event(Connection& c, uint32_t events);
    void on_readable(Connection& c);
    void process_input(Connection& c);
    void dispatch(Connection& c, HttpRequest request);
    std::unique_ptr<Reply> safe_handle(HttpRequest request, const Waker& waker);
    void attach(Connection& c, std::unique_ptr<Reply> reply);
    void poll_reply(Connection& c);
    void end_request(Connection& c);
    void send_error(Connection& c, int status, const std::string& message);
    void append_head(Connection& c, int status, std::string_view content_type,
                     const std::vector<std::pair<std::string, std::string>>& headers,
                     std::optional<size_t> length);
    void flush(Connection& c);
    void update_interest(Connection& c);
    void begin_linger(Connection& c);
    void close_now(Connection& c);
    void drain_mailbox();
    void tick();
    bool stop_finished();
    void reap();

    HttpServerOptions options_;
    HttpHandler& handler_;
    std::shared_ptr<Mailbox> mailbox_;
    WorkerPool pool_;
    int epoll_ = -1;
    int listen_fd_ = -1;
    bool listening_ = false;
    Clock::time_point accept_paused_until_;
    std::unordered_map<uint64_t, std::unique_ptr<Connection>> conns_;
    uint64_t next_id_ = 2;  // 0 and 1 are the listener's and the mailbox's epoll keys
    std::atomic<bool> stop_requested_{false};
    bool stopping_ = false;
    Clock::time_point stop_deadline_;
    Clock::time_point now_ = Clock::now();
};

void HttpServer::Loop::add_fd(int fd, uint32_t events, uint64_t key) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = key;
    if (epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &ev) != 0) {
        fail<Error>("epoll_ctl: {}", std::strerror(errno));
    }
}

int HttpServer::Loop::bind() {
    // Every connection is a descriptor: take the hard limit so max_connections can be met.
    rlimit lim{};
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
        lim.rlim_cur = lim.rlim_max;
        setrlimit(RLIMIT_NOFILE, &lim);
    }
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* res = nullptr;
    const std::string port = std::to_string(options_.port);
    if (getaddrinfo(options_.host.c_str(), port.c_str(), &hints, &res) != 0 || res == nullptr) {
        fail<Error>("cannot resolve listen address {}", options_.host);
    }
    int fd = -1;
    for (addrinfo* a = res; a != nullptr && fd < 0; a = a->ai_next) {
        fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) continue;
        const int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (::bind(fd, a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd, 1024) != 0) {
            ::close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) fail<Error>("cannot listen on {}:{}: {}", options_.host, options_.port,
                            std::strerror(errno));
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    const int bound = ntohs(addr.ss_family == AF_INET6
                                ? reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port
                                : reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
    listen_fd_ = fd;
    add_fd(listen_fd_, EPOLLIN, kListenKey);
    listening_ = true;
    return bound;
}

void HttpServer::Loop::run() {
    if (listen_fd_ < 0) fail<Error>("HttpServer::listen() before bind()");
    std::vector<epoll_event> events(256);
    Clock::time_point next_tick = Clock::now() + kTick;
    for (;;) {
        const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(
            next_tick - Clock::now());
        const int n = epoll_wait(epoll_, events.data(), static_cast<int>(events.size()),
                                 static_cast<int>(std::max<int64_t>(wait.count(), 0)));
        if (n < 0 && errno != EINTR) fail<Error>("epoll_wait: {}", std::strerror(errno));
        now_ = Clock::now();
        for (int i = 0; i < n; ++i) {
            const uint64_t key = events[i].data.u64;
            if (key == kListenKey) {
                accept_all();
            } else if (key == kMailboxKey) {
                drain_mailbox();
            } else if (auto it = conns_.find(key); it != conns_.end() && !it->second->dead) {
                on_event(*it->second, events[i].events);
            }
        }
        if (stop_requested_ && !stopping_) {
            stopping_ = true;
            stop_deadline_ = now_ + options_.stop_grace;
            epoll_ctl(epoll_, EPOLL_CTL_DEL, listen_fd_, nullptr);
            listening_ = false;
        }
        if (now_ >= next_tick) {
            tick();
            next_tick = now_ + kTick;
        }
        reap();
        if (stopping_ && stop_finished()) break;
    }
}

void HttpServer::Loop::accept_all() {
    if (!listening_) return;
    for (;;) {
        const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EMFILE || errno == ENFILE) {
                // Out of descriptors: make room, or stop accepting for a tick rather than spin.
                if (evict_idle()) continue;
                epoll_ctl(epoll_, EPOLL_CTL_DEL, listen_fd_, nullptr);
                listening_ = false;
                accept_paused_until_ = now_ + kTick;
            }
            return;
        }
        if (static_cast<int>(conns_.size()) >= options_.max_connections && !evict_idle()) {
            ::close(fd);  // every connection has a request in progress: refuse the newcomer
            continue;
        }
        const int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        auto c = std::make_unique<Connection>();
        c->id = next_id_++;
        c->fd = fd;
        c->parser = HttpRequestParser(options_.limits);
        c->last_activity = now_;
        c->interest = EPOLLIN | EPOLLRDHUP;
        add_fd(fd, c->interest, c->id);
        Connection& added = *c;
        conns_.emplace(c->id, std::move(c));
        // Read what came with the handshake now: a client that sent its whole request at once is
        // answered before a burst of later arrivals could evict it as "not yet started".
        on_readable(added);
    }
}

// Closes the connection that has waited longest without a request in progress (idle, or still
// sending its head or body). A connection accepted under a second ago that has sent nothing yet
// goes last: its client may simply not have been scheduled since connect() while a burst of
// slow heads arrived. False when every connection has a request in progress.
bool HttpServer::Loop::evict_idle() {
    Connection* victim = nullptr;
    std::pair<bool, Clock::time_point> best{true, Clock::time_point::max()};
    for (auto& [id, c] : conns_) {
        if (c->dead || c->phase != Connection::Phase::Reading) continue;
        const Clock::time_point since = c->parser.started() ? c->request_start : c->last_activity;
        const bool fresh = !c->heard_from && now_ - since < std::chrono::seconds(1);
        const std::pair<bool, Clock::time_point> rank{fresh, since};
        if (victim == nullptr || rank < best) {
            best = rank;
            victim = c.get();
        }
    }
    if (victim == nullptr) return false;
    close_now(*victim);
    return true;
}

void HttpServer::Loop::on_event(Connection& c, uint32_t events) {
    if ((events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) {
        // The client closed (or reset) its side: whatever it still wanted is cancelled. When
        // lingering, this is the close being waited for.
        close_now(c);
        return;
    }
    if ((events & EPOLLIN) != 0) on_readable(c);
    if (c.dead) return;
    if ((events & EPOLLOUT) != 0) {
        flush(c);
        if (!c.dead && c.phase == Connection::Phase::Replying && c.pending_out() == 0) {
            poll_reply(c);  // it may have been held back by the backlog
        }
    }
}

void HttpServer::Loop::on_readable(Connection& c) {
    char buf[65536];
    // At most 1 MiB per wake-up, so one fast sender cannot hold the loop (level-triggered
    // epoll comes back for the rest).
    for (int reads = 0; reads < 16; ++reads) {
        const bool busy = c.phase == Connection::Phase::Working ||
                          c.phase == Connection::Phase::Replying;
        if (busy && c.in.size() - c.in_pos >= kMaxBufferedInput) break;
        const ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
        if (n > 0) {
            c.heard_from = true;
            if (c.phase == Connection::Phase::Lingering) continue;  // discarded
            c.in.append(buf, static_cast<size_t>(n));
            // Parsed as it arrives, so a fast sender never piles up more than one read here.
            if (c.phase == Connection::Phase::Reading) process_input(c);
            if (c.dead) return;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        // End of stream or an error: the client is gone (or done, when lingering). A request in
        // progress is cancelled with its reply.
        close_now(c);
        return;
    }
    update_interest(c);
}

void HttpServer::Loop::process_input(Connection& c) {
    c.processing = true;
    while (!c.dead && c.phase == Connection::Phase::Reading) {
        const bool was_started = c.parser.started();
        const size_t used = c.parser.feed(std::string_view(c.in).substr(c.in_pos));
        c.in_pos += used;
        if (!was_started && c.parser.started()) c.request_start = now_;
        const HttpRequestParser::State state = c.parser.state();
        if (state == HttpRequestParser::State::Error) {
            send_error(c, c.parser.error_status(), c.parser.error_message());
            break;
        }
        if (state != HttpRequestParser::State::Head && !c.screened) {
            c.screened = true;
            c.head_done = now_;
            c.http10 = c.parser.request().minor_version == 0;
            c.keep_alive = c.parser.request().keep_alive;
            if (std::optional<HttpResponse> refusal = handler_.screen(c.parser.request())) {
                c.close_after = true;  // the body (if any) is never read
                attach(c, std::make_unique<FixedReply>(std::move(*refusal)));
                break;
            }
            if (c.parser.request().expect_continue) {
                c.out += "HTTP/1.1 100 Continue\r\n\r\n";
                flush(c);
                if (c.dead) break;
            }
        }
        if (state == HttpRequestParser::State::Done) {
            dispatch(c, c.parser.take());
            continue;  // a pipelined request may follow once this one is answered
        }
        if (used == 0) break;
    }
    c.processing = false;
    if (c.in_pos == c.in.size()) {
        c.in.clear();
        c.in_pos = 0;
    } else if (c.in_pos > 65536) {
        c.in.erase(0, c.in_pos);
        c.in_pos = 0;
    }
}

std::unique_ptr<Reply> HttpServer::Loop::safe_handle(HttpRequest request, const Waker& waker) {
    try {
        return handler_.handle(std::move(request), waker);
    } catch (const std::exception& e) {
        log(LogLevel::Error, "request handler failed: {}", e.what());
        return std::make_unique<FixedReply>(handler_.error(500, e.what()));
    }
}

void HttpServer::Loop::dispatch(Connection& c, HttpRequest request) {
    c.keep_alive = request.keep_alive;
    c.http10 = request.minor_version == 0;
    Waker waker = [mailbox = mailbox_, id = c.id] { mailbox->wake(id); };
    if (handler_.runs_inline(request)) {
        attach(c, safe_handle(std::move(request), waker));
        return;
    }
    c.phase = Connection::Phase::Working;
    pool_.post([this, id = c.id, request = std::move(request), waker]() mutable {
        mailbox_->deliver(id, safe_handle(std::move(request), waker));
    });
}

void HttpServer::Loop::attach(Connection& c, std::unique_ptr<Reply> reply) {
    c.phase = Connection::Phase::Replying;
    c.streamed = false;
    c.reply_done = false;
    c.reply = std::move(reply);
    poll_reply(c);
}

void HttpServer::Loop::poll_reply(Connection& c) {
    if (c.dead || !c.reply || c.reply_done || c.pending_out() > kMaxPendingOutput) return;
    Sink sink(*this, c);
    try {
        c.reply->poll(sink);
    } catch (const std::exception& e) {
        log(LogLevel::Error, "reply failed: {}", e.what());
        if (c.streamed) {
            close_now(c);  // the status line is out: a broken stream is all that can be said
            return;
        }
        c.close_after = true;
        sink.respond(handler_.error(500, e.what()));
    }
    if (c.reply_done) end_request(c);
    flush(c);
}

void HttpServer::Loop::end_request(Connection& c) {
    c.reply.reset();
    c.last_activity = now_;
    if (c.close_after || !c.keep_alive || (c.streamed && c.http10)) {
        c.close_after = true;
        return;  // flush() starts the lingering close once the output is out
    }
    c.phase = Connection::Phase::Reading;
    c.screened = false;
    // Answered in order: the next pipelined request, if its bytes are here already.
    if (!c.processing) process_input(c);
}

void HttpServer::Loop::send_error(Connection& c, int status, const std::string& message) {
    c.close_after = true;  // after a framing error the byte stream cannot be trusted
    attach(c, std::make_unique<FixedReply>(handler_.error(status, message)));
}

void HttpServer::Loop::append_head(Connection& c, int status, std::string_view content_type,
                                   const std::vector<std::pair<std::string, std::string>>& headers,
                                   std::optional<size_t> length) {
    if (stopping_) c.close_after = true;
    const bool keep = c.keep_alive && !c.close_after && !(length == std::nullopt && c.http10);
    if (!keep) c.close_after = true;
    if (c.pending_out() == 0) c.last_write = now_;
    handler_.on_response(status);
    c.out += fmt::format("HTTP/1.1 {} {}\r\n", status, reason_phrase(status));
    if (!content_type.empty()) c.out += fmt::format("Content-Type: {}\r\n", content_type);
    if (length) {
        c.out += fmt::format("Content-Length: {}\r\n", *length);
    } else if (!c.http10) {
        c.out += "Transfer-Encoding: chunked\r\n";
    }
    c.out += keep ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
    for (const auto& [k, v] : headers) c.out += fmt::format("{}: {}\r\n", k, v);
    c.out += "\r\n";
}

void HttpServer::Loop::flush(Connection& c) {
    while (c.pending_out() > 0) {
        const ssize_t n =
            ::send(c.fd, c.out.data() + c.out_pos, c.pending_out(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            c.out_pos += static_cast<size_t>(n);
            c.last_write = now_;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        close_now(c);  // reset by the peer
        return;
    }
    if (c.pending_out() == 0) {
        c.out.clear();
        c.out_pos = 0;
        if (c.close_after && c.reply == nullptr && c.phase != Connection::Phase::Lingering) {
            begin_linger(c);
            return;
        }
    }
    update_interest(c);
}

void HttpServer::Loop::update_interest(Connection& c) {
    if (c.dead) return;
    const bool busy =
        c.phase == Connection::Phase::Working || c.phase == Connection::Phase::Replying;
    const bool read = !(busy && c.in.size() - c.in_pos >= kMaxBufferedInput);
    const uint32_t want = EPOLLRDHUP | (read ? EPOLLIN : 0u) | (c.pending_out() > 0 ? EPOLLOUT : 0u);
    if (want == c.interest) return;
    epoll_event ev{};
    ev.events = want;
    ev.data.u64 = c.id;
    epoll_ctl(epoll_, EPOLL_CTL_MOD, c.fd, &ev);
    c.interest = want;
}

// Half-closes and keeps reading until the client closes too (or kLinger): closing with unread
// request bytes would send a reset that can destroy the response before the client reads it.
void HttpServer::Loop::begin_linger(Connection& c) {
    c.phase = Connection::Phase::Lingering;
    c.in.clear();
    c.in_pos = 0;
    c.linger_until = now_ + kLinger;
    ::shutdown(c.fd, SHUT_WR);
    update_interest(c);
}

void HttpServer::Loop::close_now(Connection& c) {
    if (c.dead) return;
    c.dead = true;
    if (c.reply) {
        c.reply->cancel();
        c.reply.reset();
    }
    epoll_ctl(epoll_, EPOLL_CTL_DEL, c.fd, nullptr);
    ::close(c.fd);
    c.fd = -1;
}

void HttpServer::Loop::reap() {
    std::erase_if(conns_, [](const auto& kv) { return kv.second->dead; });
}

void HttpServer::Loop::drain_mailbox() {
    std::vector<uint64_t> woken;
    std::vector<std::pair<uint64_t, std::unique_ptr<Reply>>> done;
    mailbox_->take(woken, done);
    for (auto& [id, reply] : done) {
        auto it = conns_.find(id);
        if (it == conns_.end() || it->second->dead ||
            it->second->phase != Connection::Phase::Working) {
            reply->cancel();  // the client left while a worker made its reply
            continue;
        }
        attach(*it->second, std::move(reply));
    }
    for (uint64_t id : woken) {
        auto it = conns_.find(id);
        if (it != conns_.end()) poll_reply(*it->second);
    }
}

void HttpServer::Loop::tick() {
    if (!listening_ && !stopping_ && now_ >= accept_paused_until_) {
        add_fd(listen_fd_, EPOLLIN, kListenKey);
        listening_ = true;
    }
    for (auto& [id, ptr] : conns_) {
        Connection& c = *ptr;
        if (c.dead) continue;
        if (c.pending_out() > 0 && now_ - c.last_write > options_.write_timeout) {
            close_now(c);  // the reader stopped reading
            continue;
        }
        switch (c.phase) {
            case Connection::Phase::Reading:
                if (!c.parser.started()) {
                    if (stopping_ || now_ - c.last_activity > options_.idle_timeout) close_now(c);
                } else if (c.parser.state() == HttpRequestParser::State::Head &&
                           now_ - c.request_start > options_.header_timeout) {
                    send_error(c, 408, "the request head did not arrive in time");
                } else if (c.parser.state() == HttpRequestParser::State::Body &&
                           now_ - c.head_done > options_.body_timeout) {
                    send_error(c, 408, "the request body did not arrive in time");
                } else if (stopping_) {
                    close_now(c);
                }
                break;
            case Connection::Phase::Replying:
                poll_reply(c);  // replies keep their own deadlines
                break;
            case Connection::Phase::Lingering:
                if (now_ >= c.linger_until) close_now(c);
                break;
            case Connection::Phase::Working:
                break;
        }
    }
}

// Stopping ends once no reply is in progress and every response is out, or at the deadline.
bool HttpServer::Loop::stop_finished() {
    bool busy = false;
    for (auto& [id, c] : conns_) {
        if (c->dead) continue;
        if (c->phase == Connection::Phase::Working || c->phase == Connection::Phase::Replying ||
            c->pending_out() > 0) {
            busy = true;
        }
    }
    if (busy && now_ < stop_deadline_) return false;
    for (auto& [id, c] : conns_) close_now(*c);
    reap();
    return true;
}

HttpServer::HttpServer(HttpServerOptions options, HttpHandler& handler)
    : loop_(std::make_unique<Loop>(std::move(options), handler)) {}

HttpServer::~HttpServer() = default;

int HttpServer::bind() {
    return loop_->bind();
}

void HttpServer::listen() {
    loop_->run();
}

void HttpServer::stop() {
    loop_->request_stop();
}

}  // namespace vela::server
