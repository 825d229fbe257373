#pragma once
// Minimal leveled logging to stderr; the level is set once at startup by the CLI.
#include <fmt/format.h>

#include <cstdio>

namespace vela {

enum class LogLevel { Debug = 0, Info = 1, Warn = 2, Error = 3, Off = 4 };

LogLevel& log_level();

template <class... Args>
void log(LogLevel level, fmt::format_string<Args...> f, Args&&... args) {
    if (level < log_level()) return;
    static constexpr const char* kPrefix[] = {"debug", "info", "warn", "error", ""};
    fmt::print(stderr, "vela {}: {}\n", kPrefix[static_cast<int>(level)],
               fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace vela
