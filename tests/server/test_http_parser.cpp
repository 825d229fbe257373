// The strict HTTP/1.x request parser: what it accepts, what it refuses and with which status,
// limits enforced as bytes arrive, and the same result whatever the bytes' split.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "../common/test_seed.h"
#include "server/http_parser.h"

namespace vela::server {
namespace {

struct Parsed {
    HttpRequestParser::State state;
    int status = 0;
    HttpRequest request;
    size_t used = 0;
};

// Feeds `bytes` in pieces of `piece` bytes (0: all at once), as a socket might deliver them;
// bytes the parser leaves (it waits for more) are offered again with the next piece.
Parsed parse(std::string_view bytes, HttpLimits limits = {}, size_t piece = 0) {
    HttpRequestParser p(limits);
    Parsed out;
    if (piece == 0) piece = bytes.size();
    size_t want = piece;
    while (out.used < bytes.size() && p.state() != HttpRequestParser::State::Error &&
           p.state() != HttpRequestParser::State::Done) {
        const size_t n = p.feed(bytes.substr(out.used, std::min(want, bytes.size() - out.used)));
        if (n == 0) {
            if (out.used + want >= bytes.size()) break;
            ++want;
            continue;
        }
        out.used += n;
        want = piece;
    }
    out.state = p.state();
    out.status = p.error_status();
    if (out.state == HttpRequestParser::State::Done) out.request = p.take();
    return out;
}

std::string post(std::string_view extra_headers, std::string_view body) {
    return "POST /v1/completions HTTP/1.1\r\nHost: x\r\n" + std::string(extra_headers) + "\r\n" +
           std::string(body);
}

TEST(HttpParser, SimpleGetAndPost) {
    Parsed g = parse("GET /health?x=1 HTTP/1.1\r\nHost: a\r\nX-Thing:  v  \r\n\r\n");
    ASSERT_EQ(g.state, HttpRequestParser::State::Done);
    EXPECT_EQ(g.request.method, "GET");
    EXPECT_EQ(g.request.path(), "/health");
    ASSERT_NE(g.request.header("x-thing"), nullptr);
    EXPECT_EQ(*g.request.header("x-thing"), "v");
    EXPECT_TRUE(g.request.keep_alive);

    Parsed p = parse(post("Content-Length: 5\r\n", "hello"));
    ASSERT_EQ(p.state, HttpRequestParser::State::Done);
    EXPECT_EQ(p.request.body, "hello");
}

TEST(HttpParser, ChunkedBodyIsDecoded) {
    Parsed p = parse(post("Transfer-Encoding: chunked\r\n",
                          "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n"));
    ASSERT_EQ(p.state, HttpRequestParser::State::Done);
    EXPECT_EQ(p.request.body, "hello world");
}

TEST(HttpParser, KeepAliveRules) {
    EXPECT_FALSE(
        parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").request.keep_alive);
    EXPECT_FALSE(parse("GET / HTTP/1.0\r\n\r\n").request.keep_alive);
    EXPECT_TRUE(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").request.keep_alive);
}

// Each of these is a request-smuggling or resource hole when parsed leniently.
TEST(HttpParser, RefusesAmbiguousFraming) {
    const std::pair<std::string, int> cases[] = {
        {post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello"), 400},
        {post("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"), 400},
        {post("Content-Length: +5\r\n", "hello"), 400},
        {post("Content-Length: -1\r\n", ""), 400},
        {post("Content-Length: 5 5\r\n", "hello"), 400},
        {post("Content-Length: 99999999999999999999999\r\n", ""), 400},
        {post("Transfer-Encoding: gzip, chunked\r\n", ""), 501},
        {post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", ""), 400},
        {post("Content-Encoding: gzip\r\nContent-Length: 2\r\n", "xx"), 415},
        {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\n\r\n", 400},                        // no Host
        {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},  // two Hosts
        {"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", 400},       // bare LF
        {"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400},
        {std::string("GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer k\0x\r\n\r\n", 54), 400},
        {"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
        {"GET / HTTX/1.1\r\nHost: a\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", 417},
        {post("Transfer-Encoding: chunked\r\n", "5\r\nhello!!\r\n0\r\n\r\n"), 400},
        {post("Transfer-Encoding: chunked\r\n", "zz\r\n"), 400},
        {post("Transfer-Encoding: chunked\r\n", "5\nhello\r\n"), 400},
    };
    for (const auto& [bytes, status] : cases) {
        const Parsed p = parse(bytes);
        EXPECT_EQ(p.state, HttpRequestParser::State::Error) << bytes;
        EXPECT_EQ(p.status, status) << bytes;
    }
}

TEST(HttpParser, LimitsApplyBeforeTheBytesArrive) {
    HttpLimits limits;
    limits.max_body = 100;
    // The declared length is refused from the head alone.
    EXPECT_EQ(parse(post("Content-Length: 101\r\n", ""), limits).status, 413);
    // A chunked body is refused once its running total passes the limit.
    std::string chunked = post("Transfer-Encoding: chunked\r\n", "");
    for (int i = 0; i < 10; ++i) chunked += "10\r\n" + std::string(16, 'a') + "\r\n";
    const Parsed c = parse(chunked, limits);
    EXPECT_EQ(c.status, 413);
    EXPECT_LT(c.used, chunked.size());
    // Header section and request line.
    limits.max_header_bytes = 200;
    EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(300, 'a') + "\r\n\r\n", limits)
                  .status,
              431);
    const Parsed endless =
        parse("GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(1000, 'a'), limits);
    EXPECT_EQ(endless.status, 431);  // no blank line ever comes: refused at the limit
    limits.max_line = 50;
    EXPECT_EQ(parse("GET /" + std::string(100, 'a'), limits).status, 414);
    limits.max_headers = 3;
    EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 1\r\nC: 1\r\n\r\n", limits).status,
              431);
}

TEST(HttpParser, StopsAfterTheHeadAndAfterOneRequest) {
    HttpRequestParser p;
    const std::string req = post("Content-Length: 3\r\n", "abc");
    const size_t head = req.size() - 3;
    EXPECT_EQ(p.feed(req), head);  // the caller screens the head before reading the body
    EXPECT_EQ(p.state(), HttpRequestParser::State::Body);
    EXPECT_EQ(*p.request().header("content-length"), "3");
    const std::string two = "abc" + req;  // the body, then a pipelined request
    EXPECT_EQ(p.feed(two), 3u);
    EXPECT_EQ(p.state(), HttpRequestParser::State::Done);
    EXPECT_EQ(p.take().body, "abc");
    EXPECT_EQ(p.state(), HttpRequestParser::State::Head);
    EXPECT_FALSE(p.started());
    EXPECT_EQ(p.feed(std::string_view(two).substr(3)), head);
}

TEST(HttpParser, AnySplitGivesTheSameRequest) {
    const std::string chunked = post("Transfer-Encoding: chunked\r\nX-A: 1\r\n",
                                     "3\r\nabc\r\n1a\r\n" + std::string(26, 'z') + "\r\n0\r\n\r\n");
    const std::string plain = post("Content-Length: 11\r\n", "hello world");
    for (const std::string& bytes : {chunked, plain}) {
        const Parsed whole = parse(bytes);
        ASSERT_EQ(whole.state, HttpRequestParser::State::Done);
        for (size_t piece = 1; piece < 9; ++piece) {
            const Parsed split = parse(bytes, {}, piece);
            ASSERT_EQ(split.state, HttpRequestParser::State::Done) << piece;
            EXPECT_EQ(split.request.body, whole.request.body) << piece;
            EXPECT_EQ(split.request.headers, whole.request.headers) << piece;
        }
    }
}

// Random bytes and random mutations of a valid request never crash, and a verdict is always
// reached or more input is asked for.
TEST(HttpParser, RandomInputNeverBreaksIt) {
    std::mt19937 rng(test::fresh_seed());  // printed; VELA_TEST_SEED replays it
    const std::string base = post("Transfer-Encoding: chunked\r\n", "3\r\nabc\r\n0\r\n\r\n");
    for (int iter = 0; iter < 20000; ++iter) {
        std::string bytes = base;
        const int edits = 1 + static_cast<int>(rng() % 4);
        for (int e = 0; e < edits; ++e) {
            const size_t at = rng() % bytes.size();
            switch (rng() % 3) {
                case 0:
                    bytes[at] = static_cast<char>(rng());
                    break;
                case 1:
                    bytes.erase(at, 1 + rng() % 3);
                    break;
                default:
                    bytes.insert(at, 1, static_cast<char>(rng()));
                    break;
            }
            if (bytes.empty()) bytes.push_back('x');
        }
        const Parsed p = parse(bytes, {}, 1 + rng() % 7);
        if (p.state == HttpRequestParser::State::Error) {
            EXPECT_GE(p.status, 400);
            EXPECT_LT(p.status, 600);
        }
        EXPECT_LE(p.used, bytes.size());
    }
}

}  // namespace
}  // namespace vela::server
