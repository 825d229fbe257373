#include "server/json_limits.h"

#include <fmt/format.h>

#include <string>
#include <vector>

#include "server/api_error.h"

namespace vela::server {
namespace {

using nlohmann::json;

// Follows the SAX events to know which field the parser is in when it fails, as the path
// syntax the request errors use ("messages[0].content"). Only run on the failure path.
class FieldLocator : public nlohmann::json_sax<json> {
  public:
    std::string failed_at;  // the path when the parser reported its error

    bool null() override { return value(); }
    bool boolean(bool) override { return value(); }
    bool number_integer(number_integer_t) override { return value(); }
    bool number_unsigned(number_unsigned_t) override { return value(); }
    bool number_float(number_float_t, const string_t&) override { return value(); }
    bool string(string_t&) override { return value(); }
    bool binary(binary_t&) override { return value(); }
    bool start_object(std::size_t) override { return open(false); }
    bool start_array(std::size_t) override { return open(true); }
    bool end_object() override { return close(); }
    bool end_array() override { return close(); }
    bool key(string_t& k) override {
        frames_.back().key = k;
        return true;
    }
    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
        failed_at = path();
        return false;
    }

  private:
    struct Frame {
        bool array = false;
        size_t index = 0;  // arrays: the element being parsed
        std::string key;   // objects: the member being parsed
    };

    bool value() {
        if (!frames_.empty() && frames_.back().array) ++frames_.back().index;
        return true;
    }
    bool open(bool array) {
        frames_.push_back({array, 0, {}});
        return true;
    }
    bool close() {
        frames_.pop_back();
        return value();
    }
    std::string path() const {
        std::string out;
        for (const Frame& f : frames_) {
            if (f.array)
                out += fmt::format("[{}]", f.index);
            else if (!f.key.empty())
                out += (out.empty() ? "" : ".") + f.key;
        }
        return out;
    }

    std::vector<Frame> frames_;
};

std::string field_of_parse_failure(std::string_view body) {
    FieldLocator locator;
    json::sax_parse(body.begin(), body.end(), &locator);
    return locator.failed_at;
}

}  // namespace

void check_json_depth(std::string_view body, int max_depth) {
    int depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < body.size(); ++i) {
        const char c = body[i];
        if (in_string) {
            if (c == '\\')
                ++i;  // the escaped byte, e.g. \" or \\, cannot end the string
            else if (c == '"')
                in_string = false;
            continue;
        }
        if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max_depth) {
                throw ApiError(400, fmt::format("the body nests JSON arrays and objects deeper "
                                                "than {} levels (at byte {})",
                                                max_depth, i));
            }
        } else if ((c == ']' || c == '}') && depth > 0) {
            --depth;  // an unbalanced one is the parser's to report
        }
    }
}

json parse_json_body(std::string_view body, int max_depth) {
    check_json_depth(body, max_depth);
    try {
        return json::parse(body.begin(), body.end());
    } catch (const json::parse_error& e) {
        throw ApiError(400, fmt::format("the body is not valid JSON: {}", e.what()));
    } catch (const json::out_of_range& e) {
        // A number whose magnitude exceeds a double (1e999): the parser rejects it.
        const std::string field = field_of_parse_failure(body);
        throw ApiError(400,
                       fmt::format("'{}' holds a number out of range: {}",
                                   field.empty() ? "the body" : field, e.what()),
                       "invalid_request_error", field, "invalid_value");
    } catch (const json::exception& e) {
        throw ApiError(400, fmt::format("the body is not valid JSON: {}", e.what()));
    }
}

}  // namespace vela::server
