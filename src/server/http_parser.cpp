#include "server/http_parser.h"

#include <algorithm>
#include <cctype>

namespace vela::server {
namespace {

constexpr std::string_view kCrlf = "\r\n";

bool is_tchar(unsigned char c) {
    // RFC 9110 token characters.
    return std::isalnum(c) != 0 || std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) !=
                                       std::string_view::npos;
}

// Field values: visible ASCII, space, tab and obs-text; no NUL, CR, LF or other controls.
bool valid_value(std::string_view v) {
    return std::all_of(v.begin(), v.end(), [](char ch) {
        const auto c = static_cast<unsigned char>(ch);
        return c == '\t' || (c >= 0x20 && c != 0x7f);
    });
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// Comma-separated list elements, trimmed and lower-cased ("keep-alive, Upgrade").
std::vector<std::string> list_tokens(std::string_view v) {
    std::vector<std::string> out;
    while (!v.empty()) {
        const size_t comma = v.find(',');
        const std::string_view item = trim(v.substr(0, comma));
        if (!item.empty()) out.push_back(lower(item));
        if (comma == std::string_view::npos) break;
        v.remove_prefix(comma + 1);
    }
    return out;
}

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

}  // namespace

const std::string* HttpRequest::header(std::string_view name) const {
    for (const auto& [k, v] : headers) {
        if (k == name) return &v;
    }
    return nullptr;
}

std::string_view HttpRequest::path() const {
    const std::string_view t = target;
    return t.substr(0, t.find('?'));
}

bool HttpRequestParser::fail(int status, std::string message) {
    state_ = State::Error;
    error_status_ = status;
    error_message_ = std::move(message);
    return false;
}

HttpRequest HttpRequestParser::take() {
    HttpRequest out = std::move(request_);
    const HttpLimits limits = limits_;
    *this = HttpRequestParser(limits);
    return out;
}

size_t HttpRequestParser::feed(std::string_view data) {
    if (state_ == State::Head) return feed_head(data);
    if (state_ == State::Body) return feed_body(data);
    return 0;
}

size_t HttpRequestParser::feed_head(std::string_view data) {
    size_t used = 0;
    // Empty lines before a request line are ignored (RFC 9112 2.2): some clients send a CRLF
    // after a body.
    while (head_.empty() && used < data.size() && (data[used] == '\r' || data[used] == '\n')) {
        if (data.substr(used, 2) != kCrlf) {
            if (used + 1 == data.size() && data[used] == '\r') return used;  // wait for the LF
            fail(400, "bare CR or LF before the request line");
            return used;
        }
        used += 2;
    }
    if (used == data.size()) return used;
    started_ = true;
    const size_t before = head_.size();
    const size_t room = limits_.max_header_bytes + 4 - before;
    head_.append(data.substr(used, room));
    size_t end = head_.find("\r\n\r\n", head_scan_ > 3 ? head_scan_ - 3 : 0);
    if (end == std::string::npos) {
        const size_t first_line = head_.find(kCrlf);
        if (first_line == std::string::npos && head_.size() > limits_.max_line) {
            fail(414, "the request line is too long");
        } else if (head_.size() > limits_.max_header_bytes) {
            fail(431, "the request header section is too large");
        }
        head_scan_ = head_.size();
        return used + (head_.size() - before);
    }
    const size_t head_len = end + 4;
    const size_t consumed = used + (head_len - before);
    head_.resize(end);
    if (head_len > limits_.max_header_bytes) {
        fail(431, "the request header section is too large");
        return consumed;
    }
    if (parse_head()) {
        state_ = body_mode_ == BodyMode::None ? State::Done : State::Body;
    }
    return consumed;
}

bool HttpRequestParser::parse_head() {
    std::string_view rest = head_;
    size_t eol = rest.find(kCrlf);
    if (!parse_request_line(rest.substr(0, eol))) return false;
    while (eol != std::string_view::npos) {
        rest.remove_prefix(eol + 2);
        eol = rest.find(kCrlf);
        if (!parse_header_line(rest.substr(0, eol))) return false;
    }
    return check_semantics();
}

bool HttpRequestParser::parse_request_line(std::string_view line) {
    if (line.size() > limits_.max_line) return fail(414, "the request line is too long");
    if (line.find_first_of("\r\n") != std::string_view::npos) {
        return fail(400, "bare CR or LF in the request line");
    }
    const size_t sp1 = line.find(' ');
    const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
        return fail(400, "malformed request line");
    }
    const std::string_view method = line.substr(0, sp1);
    const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    const std::string_view version = line.substr(sp2 + 1);
    if (method.empty() || method.size() > 16 ||
        !std::all_of(method.begin(), method.end(),
                     [](char c) { return is_tchar(static_cast<unsigned char>(c)); })) {
        return fail(400, "malformed request method");
    }
    if (target.empty() || target[0] != '/' ||
        !std::all_of(target.begin(), target.end(),
                     [](char c) { return c > 0x20 && c < 0x7f; })) {
        return fail(400, "malformed request target");
    }
    if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.' ||
        !std::isdigit(static_cast<unsigned char>(version[5])) ||
        !std::isdigit(static_cast<unsigned char>(version[7]))) {
        return fail(400, "malformed HTTP version");
    }
    if (version[5] != '1' || (version[7] != '0' && version[7] != '1')) {
        return fail(505, "only HTTP/1.0 and HTTP/1.1 are supported");
    }
    request_.method = std::string(method);
    request_.target = std::string(target);
    request_.minor_version = version[7] - '0';
    return true;
}

bool HttpRequestParser::parse_header_line(std::string_view line) {
    if (request_.headers.size() >= limits_.max_headers) {
        return fail(431, "too many request header fields");
    }
    if (!line.empty() && (line[0] == ' ' || line[0] == '\t')) {
        return fail(400, "folded header lines are not accepted");
    }
    const size_t colon = line.find(':');
    if (colon == 0 || colon == std::string_view::npos) return fail(400, "malformed header line");
    const std::string_view name = line.substr(0, colon);
    if (!std::all_of(name.begin(), name.end(),
                     [](char c) { return is_tchar(static_cast<unsigned char>(c)); })) {
        return fail(400, "malformed header name (no whitespace before the colon)");
    }
    const std::string_view value = trim(line.substr(colon + 1));
    if (!valid_value(value)) return fail(400, "control character in a header value");
    request_.headers.emplace_back(lower(name), std::string(value));
    return true;
}

bool HttpRequestParser::check_semantics() {
    int n_length = 0, n_te = 0, n_host = 0;
    const std::string* length = nullptr;
    const std::string* te = nullptr;
    bool close = false, keep_alive = false;
    for (const auto& [name, value] : request_.headers) {
        if (name == "content-length") {
            ++n_length;
            length = &value;
        } else if (name == "transfer-encoding") {
            ++n_te;
            te = &value;
        } else if (name == "host") {
            ++n_host;
        } else if (name == "connection") {
            for (const std::string& t : list_tokens(value)) {
                close |= t == "close";
                keep_alive |= t == "keep-alive";
            }
        } else if (name == "content-encoding") {
            for (const std::string& t : list_tokens(value)) {
                if (t != "identity") return fail(415, "compressed request bodies are not accepted");
            }
        } else if (name == "expect") {
            if (lower(value) != "100-continue") return fail(417, "unsupported Expect value");
            request_.expect_continue = true;
        }
    }
    const bool http11 = request_.minor_version == 1;
    request_.keep_alive = http11 ? !close : keep_alive && !close;
    if (http11 && n_host != 1) return fail(400, "an HTTP/1.1 request needs exactly one Host");
    if (n_length > 1) return fail(400, "more than one Content-Length");
    if (n_te > 1) return fail(400, "more than one Transfer-Encoding");
    if (te != nullptr) {
        if (length != nullptr) return fail(400, "both Transfer-Encoding and Content-Length");
        if (!http11) return fail(400, "Transfer-Encoding in an HTTP/1.0 request");
        if (lower(*te) != "chunked") return fail(501, "only chunked transfer coding is supported");
        body_mode_ = BodyMode::Chunked;
    } else if (length != nullptr) {
        if (length->empty() || length->size() > 18 ||
            !std::all_of(length->begin(), length->end(),
                         [](char c) { return c >= '0' && c <= '9'; })) {
            return fail(400, "malformed Content-Length");
        }
        remaining_ = std::stoull(*length);
        if (remaining_ > limits_.max_body) return fail(413, "the request body is too large");
        body_mode_ = remaining_ > 0 ? BodyMode::Length : BodyMode::None;
    }
    if (body_mode_ == BodyMode::None) request_.expect_continue = false;
    return true;
}

size_t HttpRequestParser::feed_body(std::string_view data) {
    if (body_mode_ == BodyMode::Chunked) return feed_chunked(data);
    const size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, data.size()));
    request_.body.append(data.substr(0, n));
    remaining_ -= n;
    if (remaining_ == 0) state_ = State::Done;
    return n;
}

// Appends to line_ up to a CRLF; true with the line (without CRLF) once it is complete.
bool HttpRequestParser::take_line(std::string_view data, size_t& used, size_t limit, int status,
                                  std::string_view& line) {
    while (used < data.size()) {
        const char c = data[used++];
        line_.push_back(c);
        if (line_.size() > limit) {
            fail(status, "a chunk line is too long");
            return false;
        }
        if (c == '\n') {
            if (line_.size() < 2 || line_[line_.size() - 2] != '\r') {
                fail(400, "bare LF in the chunked body");
                return false;
            }
            line = std::string_view(line_).substr(0, line_.size() - 2);
            return true;
        }
    }
    return false;
}

size_t HttpRequestParser::feed_chunked(std::string_view data) {
    size_t used = 0;
    while (used < data.size() && state_ == State::Body) {
        std::string_view line;
        switch (chunk_state_) {
            case ChunkState::Size: {
                if (!take_line(data, used, limits_.max_line, 400, line)) break;
                const size_t ext = line.find(';');
                const std::string_view digits = line.substr(0, ext);
                if (digits.empty() || digits.size() > 15 || !valid_value(line)) {
                    fail(400, "malformed chunk size");
                    break;
                }
                uint64_t size = 0;
                for (char c : digits) {
                    const int d = hex_digit(c);
                    if (d < 0) {
                        fail(400, "malformed chunk size");
                        return used;
                    }
                    size = size * 16 + static_cast<uint64_t>(d);
                }
                line_.clear();
                if (size > limits_.max_body - request_.body.size()) {
                    fail(413, "the request body is too large");
                    break;
                }
                remaining_ = size;
                chunk_state_ = size == 0 ? ChunkState::Trailer : ChunkState::Data;
                break;
            }
            case ChunkState::Data: {
                const size_t n =
                    static_cast<size_t>(std::min<uint64_t>(remaining_, data.size() - used));
                request_.body.append(data.substr(used, n));
                used += n;
                remaining_ -= n;
                if (remaining_ == 0) chunk_state_ = ChunkState::DataEnd;
                break;
            }
            case ChunkState::DataEnd: {
                if (!take_line(data, used, 2, 400, line)) break;
                if (!line.empty()) {
                    fail(400, "chunk data longer than its size");
                    break;
                }
                line_.clear();
                chunk_state_ = ChunkState::Size;
                break;
            }
            case ChunkState::Trailer: {
                if (!take_line(data, used, limits_.max_line, 431, line)) break;
                trailer_bytes_ += line.size() + 2;
                if (trailer_bytes_ > limits_.max_header_bytes || !valid_value(line)) {
                    fail(431, "malformed or oversized trailer section");
                    break;
                }
                const bool last = line.empty();
                line_.clear();
                if (last) state_ = State::Done;  // trailer fields are read and ignored
                break;
            }
        }
    }
    return used;
}

}  // namespace vela::server
