#include "backend/cpu/isa.h"

#include <cstdlib>

#include "core/log.h"

namespace vela::cpu {

std::string_view isa_name(Isa isa) {
    switch (isa) {
        case Isa::Scalar:
            return "scalar";
        case Isa::Avx2:
            return "avx2";
        case Isa::Avx512:
            return "avx512";
    }
    return "unknown";
}

std::optional<Isa> parse_isa(std::string_view name) {
    for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) {
        if (name == isa_name(isa)) return isa;
    }
    return std::nullopt;
}

Isa detect_isa() {
#if defined(__x86_64__)
    __builtin_cpu_init();
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                      __builtin_cpu_supports("f16c");
    if (!avx2) return Isa::Scalar;
    const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
    return avx512 ? Isa::Avx512 : Isa::Avx2;
#else
    return Isa::Scalar;
#endif
}

Isa default_isa() {
    const Isa best = detect_isa();
    const char* env = std::getenv("VELA_CPU_ISA");
    if (env == nullptr || *env == '\0') return best;
    const std::optional<Isa> wanted = parse_isa(env);
    if (!wanted) {
        log(LogLevel::Warn, "VELA_CPU_ISA={} is not one of scalar|avx2|avx512; using {}", env,
            isa_name(best));
        return best;
    }
    // A request above what the CPU runs would crash on an illegal instruction: clamp it.
    return static_cast<int>(*wanted) < static_cast<int>(best) ? *wanted : best;
}

}  // namespace vela::cpu
