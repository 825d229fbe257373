// libFuzzer target for the HTTP request parser and the request body parsing behind it: any
// byte string, delivered in pieces whose sizes come from the input itself, must end in a
// request, an error status in 400..599, or a wish for more bytes; the body of a parsed request
// must either parse as JSON within the depth limit or raise ApiError. Crashes, hangs, sanitizer
// reports and other exceptions are bugs.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "server/api_error.h"
#include "server/http_parser.h"
#include "server/json_limits.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const size_t piece = 1 + data[0] % 16;  // socket reads of varying sizes
    std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
    vela::server::HttpLimits limits;
    limits.max_body = 1 << 16;
    vela::server::HttpRequestParser parser(limits);
    size_t pos = 0, want = piece;
    using State = vela::server::HttpRequestParser::State;
    while (pos < bytes.size()) {
        const size_t n = parser.feed(bytes.substr(pos, std::min(want, bytes.size() - pos)));
        if (parser.state() == State::Error) {
            if (parser.error_status() < 400 || parser.error_status() > 599) std::abort();
            return 0;
        }
        if (parser.state() == State::Done) {
            const vela::server::HttpRequest r = parser.take();
            try {
                (void)vela::server::parse_json_body(r.body);
            } catch (const vela::server::ApiError&) {
            }
        }
        if (n == 0) {
            if (pos + want >= bytes.size()) break;
            ++want;
            continue;
        }
        pos += n;
        want = piece;
    }
    return 0;
}
