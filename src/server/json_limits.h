#pragma once
// Guards on a request body before and while it becomes a JSON document. nlohmann::json builds
// a node per '[' or '{' and keeps them all, so a body of 8 MB of '[' would cost hundreds of MB
// before the parser reaches its error; the depth check runs first, on the raw bytes. Every
// failure is an ApiError(400), so no JSON exception leaves the request layer as a 500.
#include <nlohmann/json.hpp>
#include <string_view>

namespace vela::server {

// An OpenAI request nests 4 levels (body, messages, message, content parts); 64 leaves room for
// any extension without letting nesting drive memory.
inline constexpr int kMaxJsonDepth = 64;

// One pass over `body` (string literals skipped, escapes included) that throws ApiError(400)
// when arrays and objects nest deeper than max_depth. Other syntax errors are left to the
// parser. O(body) time, O(1) memory.
void check_json_depth(std::string_view body, int max_depth = kMaxJsonDepth);

// check_json_depth, then nlohmann::json::parse. Throws ApiError(400) for invalid JSON and for a
// number too large for a double (e.g. 1e999, which the parser refuses as out of range); the
// latter names the field that holds it, e.g. "max_tokens" or "messages[0].content".
nlohmann::json parse_json_body(std::string_view body, int max_depth = kMaxJsonDepth);

}  // namespace vela::server
