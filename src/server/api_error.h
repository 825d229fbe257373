#pragma once
// An error the server reports to the client: one HTTP status and the OpenAI error object
// {"error": {"message", "type", "param", "code"}}.
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace vela::server {

struct ApiError : std::runtime_error {
    ApiError(int status, const std::string& message, std::string type = "invalid_request_error",
             std::string param = "", std::string code = "")
        : std::runtime_error(message),
          status(status),
          type(std::move(type)),
          param(std::move(param)),
          code(std::move(code)) {}

    int status;
    std::string type;
    std::string param;  // the request field at fault, "" when none
    std::string code;   // machine-readable reason, "" when none

    nlohmann::json body() const {
        auto opt = [](const std::string& s) {
            return s.empty() ? nlohmann::json() : nlohmann::json(s);
        };
        return {
            {"error",
             {{"message", what()}, {"type", type}, {"param", opt(param)}, {"code", opt(code)}}}};
    }
};

inline ApiError bad_field(const std::string& param, const std::string& message) {
    return ApiError(400, message, "invalid_request_error", param, "invalid_value");
}

}  // namespace vela::server
