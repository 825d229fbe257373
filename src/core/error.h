#pragma once
// Errors in layers (docs/architecture.md): invariants abort through VELA_ASSERT; anything a user
// can cause (bad file, bad flag, bad request) throws vela::Error with a message naming the culprit.
#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace vela {

class Error : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// A file is malformed or not what we support (GGUF parsing, model binding).
class FormatError : public Error {
  public:
    using Error::Error;
};

// A caller passed an invalid argument (CLI flag, sampling parameter, request field).
class InvalidArgument : public Error {
  public:
    using Error::Error;
};

// A resource ran out (KV blocks, context length).
class ResourceExhausted : public Error {
  public:
    using Error::Error;
};

template <class E = Error, class... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
    throw E(fmt::format(f, std::forward<Args>(args)...));
}

[[noreturn]] inline void assert_fail(const char* expr, const char* file, int line) {
    std::fprintf(stderr, "vela: internal invariant failed: %s at %s:%d\n", expr, file, line);
    std::abort();
}

}  // namespace vela

// Internal invariant, kept in release builds: a violation is a bug in Vela, never user error.
#define VELA_ASSERT(cond) ((cond) ? (void)0 : ::vela::assert_fail(#cond, __FILE__, __LINE__))
