#pragma once
// Instruction-set levels the CPU kernels are compiled for. Each level's kernels live in their
// own .cpp built with that level's flags; the rest of the project is built for baseline x86-64.
#include <optional>
#include <string_view>

namespace vela::cpu {

enum class Isa { Scalar = 0, Avx2 = 1, Avx512 = 2 };

std::string_view isa_name(Isa isa);
std::optional<Isa> parse_isa(std::string_view name);

// Highest level this CPU runs: Avx2 needs AVX2+FMA+F16C, Avx512 needs F, BW, VL and VNNI too.
Isa detect_isa();

// detect_isa(), lowered (never raised) by the environment variable VELA_CPU_ISA.
Isa default_isa();

}  // namespace vela::cpu
