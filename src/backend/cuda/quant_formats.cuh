#pragma once
// Decoders of the GGUF weight formats for the CUDA kernels (quant_kernels.cu). They compile as
// host code too, so that a CPU test (tests/cuda/test_quant_formats.cpp) can hold them against
// vela::cpu::dequantize_row, the definition: values come out bit-identical to it (same roundings,
// no contraction into FMA) except that a NaN may carry another payload.
//
// Each format splits a block into kChunks chunks; a chunk is kRuns runs of kRunLen consecutive
// elements, run r starting at element run_start(chunk, r) of the block. load() reads one chunk's
// bytes with the widest loads the block layout allows in a 16-byte aligned tensor, decode() turns
// them into kRuns * kRunLen floats in registers (run r at v[r * kRunLen]). Chunk shapes are made
// for the matvec, where consecutive lanes take consecutive chunks: their loads touch neighbouring
// bytes, and with the activations staged in shared memory with one float4 of padding after
// every 2^kPadLog2 floats, their float4 reads of the activations hit distinct banks.
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#endif

#if defined(__CUDACC__)
#define VELA_QHD __host__ __device__ __forceinline__
#else
#define VELA_QHD inline
#endif
#if defined(__CUDA_ARCH__)
#define VELA_UNROLL _Pragma("unroll")
#else
#define VELA_UNROLL  // the host compiler's own choice (GCC warns about "unroll")
#endif

namespace vela::cuda_backend::quant {

// ---- loads: __ldg on the device, memcpy on the host ----

struct Words4 {
    uint32_t w[4];
};

VELA_QHD uint32_t ld32(const uint8_t* p) {  // p 4-byte aligned
#ifdef __CUDA_ARCH__
    return __ldg(reinterpret_cast<const unsigned int*>(p));
#else
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
#endif
}

VELA_QHD uint32_t ld16(const uint8_t* p) {  // p 2-byte aligned
#ifdef __CUDA_ARCH__
    return __ldg(reinterpret_cast<const unsigned short*>(p));
#else
    uint16_t v;
    std::memcpy(&v, p, 2);
    return v;
#endif
}

VELA_QHD int ld_s8(const uint8_t* p) {
#ifdef __CUDA_ARCH__
    return __ldg(reinterpret_cast<const signed char*>(p));
#else
    return static_cast<int8_t>(*p);
#endif
}

VELA_QHD Words4 ld128(const uint8_t* p) {  // p 16-byte aligned
#ifdef __CUDA_ARCH__
    const uint4 v = __ldg(reinterpret_cast<const uint4*>(p));
    return {{v.x, v.y, v.z, v.w}};
#else
    Words4 v;
    std::memcpy(v.w, p, 16);
    return v;
#endif
}

// ---- bit and float helpers; the float ones round once each, as the CPU code does ----

VELA_QHD float as_float(uint32_t u) {
#ifdef __CUDA_ARCH__
    return __uint_as_float(u);
#else
    float f;
    std::memcpy(&f, &u, 4);
    return f;
#endif
}

VELA_QHD uint32_t as_bits(float f) {
#ifdef __CUDA_ARCH__
    return __float_as_uint(f);
#else
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
#endif
}

VELA_QHD float fmul(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}

VELA_QHD float fadd(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}

VELA_QHD float fsub(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fsub_rn(a, b);
#else
    return a - b;
#endif
}

VELA_QHD float ffma(float a, float b, float c) {
#ifdef __CUDA_ARCH__
    return __fmaf_rn(a, b, c);
#else
    return std::fma(a, b, c);
#endif
}

// Byte n of the result is byte (s >> 4n) & 7 of the 8 bytes y:x (x the low four).
VELA_QHD uint32_t byte_perm(uint32_t x, uint32_t y, uint32_t s) {
#ifdef __CUDA_ARCH__
    return __byte_perm(x, y, s);
#else
    const uint64_t v = (static_cast<uint64_t>(y) << 32) | x;
    uint32_t r = 0;
    for (int n = 0; n < 4; ++n)
        r |= static_cast<uint32_t>((v >> (8 * ((s >> (4 * n)) & 7))) & 0xFF) << (8 * n);
    return r;
#endif
}

// The 32 bits at bit `sh` (0 or 16) of hi:lo.
VELA_QHD uint32_t funnel(uint32_t lo, uint32_t hi, uint32_t sh) {
#ifdef __CUDA_ARCH__
    return __funnelshift_r(lo, hi, sh);
#else
    return static_cast<uint32_t>(((static_cast<uint64_t>(hi) << 32) | lo) >> sh);
#endif
}

// fp16 bits to fp32, exactly as vela::fp16_to_fp32 (subnormals exact; the host code keeps a
// NaN's payload, the device's conversion may not).
VELA_QHD float half_to_float(uint32_t h) {
#ifdef __CUDA_ARCH__
    // The hardware conversion: exact for every finite value and infinity; a NaN stays NaN.
    return __half2float(__ushort_as_half(static_cast<unsigned short>(h)));
#else
    const uint32_t sign = (h & 0x8000u) << 16, em = h & 0x7FFFu;
    if (em >= 0x7C00u) return as_float(sign | 0x7F800000u | ((em & 0x3FFu) << 13));
    if (em >= 0x0400u) return as_float(sign | ((em << 13) + 0x38000000u));
    return as_float(sign | as_bits(static_cast<float>(em) * 0x1p-24f));  // exact: em < 2^10
#endif
}

VELA_QHD bool finite(float f) {
    return (as_bits(f) & 0x7F800000u) != 0x7F800000u;
}

// Small integers are turned into floats by placing them in the mantissa of a power of two:
// byte k of w (0..255) becomes float(2^23 + byte) or float(2^15 + byte), one PRMT and no I2F.
VELA_QHD float magic23(uint32_t w, int k) {
    return as_float(byte_perm(w, 0x4B000000u, 0x7440u | k));
}
VELA_QHD float magic15(uint32_t w, int k) {
    return as_float(byte_perm(w, 0x47000000u, 0x7404u | (k << 4)));
}
constexpr float k2p23 = 8388608.0f;
constexpr float k2p15 = 32768.0f;

// Bit b (0..3) of x moved to bit 8b + 4: the 5th bit of the bytes of a 5-bit type. The
// multiplier's shifted copies of x do not overlap, so there are no carries.
VELA_QHD uint32_t spread4_to_bit4(uint32_t x) {
    return ((x & 0xFu) * 0x02040810u) & 0x10101010u;
}

// N bytes from a 2-byte aligned p as N/4 words. Reads [p - 2, p + N + 2) when p is not 4-byte
// aligned: callers only use it where that stays inside the block.
template <int NW>
VELA_QHD void load_words_a2(const uint8_t* p, uint32_t (&out)[NW]) {
    const uintptr_t u = reinterpret_cast<uintptr_t>(p);
    const uint8_t* a = p - (u & 2);
    const uint32_t sh = (u & 2) ? 16u : 0u;
    uint32_t t[NW + 1];
    VELA_UNROLL
    for (int i = 0; i < NW; ++i) t[i] = ld32(a + 4 * i);
    t[NW] = sh ? ld32(a + 4 * NW) : 0u;
    VELA_UNROLL
    for (int i = 0; i < NW; ++i) out[i] = funnel(t[i], t[i + 1], sh);
}

// A block of 2 + 4 * NW bytes at a 2-byte aligned address (Q4_0, Q5_0, Q8_0): the fp16 head and
// the payload as words, read exactly (no byte outside the block) with NW word loads and one
// 16-bit load, whichever of the two alignments the block has.
template <int NW>
VELA_QHD void load_head_payload(const uint8_t* blk, uint32_t& head, uint32_t (&payload)[NW]) {
    const bool odd = (reinterpret_cast<uintptr_t>(blk) & 2) != 0;  // payload 4-byte aligned
    const uint8_t* a = blk + (odd ? 2 : 0);
    uint32_t t[NW];
    VELA_UNROLL
    for (int i = 0; i < NW; ++i) t[i] = ld32(a + 4 * i);
    const uint32_t h = ld16(odd ? blk : blk + 4 * NW);  // the head, or the payload's last 2 bytes
    const uint32_t sh = odd ? 0u : 16u;
    head = odd ? h : (t[0] & 0xFFFFu);
    VELA_UNROLL
    for (int i = 0; i < NW; ++i) payload[i] = funnel(t[i], i + 1 < NW ? t[i + 1] : h, sh);
}

// ---- shared value rules ----

// N values x = dl * q - ml for q in the bytes of q4 (0..255), as the CPU computes them: fl(fl(dl
// * q) - ml). The fast path gets fl(dl * q) in one FMA, dl * (2^23 + q) - dl * 2^23 (exact
// operands, one rounding); it is taken when it cannot differ from the product, whose only other
// difference is the sign of a zero product (FMA gives +0), visible only when ml is +0 and the
// product -0.
template <int N>
VELA_QHD void affine_2p23(float dl, float ml, const uint32_t* q4, float* v) {
    const bool fast = finite(dl) && !((as_bits(dl) >> 31) && as_bits(ml) == 0u);
    if (fast) {
        const float c = fmul(dl, -k2p23);
        VELA_UNROLL
        for (int i = 0; i < N; ++i) v[i] = fsub(ffma(dl, magic23(q4[i / 4], i % 4), c), ml);
    } else {
        VELA_UNROLL
        for (int i = 0; i < N; ++i)
            v[i] = fsub(fmul(dl, fsub(magic23(q4[i / 4], i % 4), k2p23)), ml);
    }
}

// Position of activation element e in the matvec's shared memory: one float4 of padding after
// every 2^F::kPadLog2 floats, which spreads the lanes' float4 reads over all banks.
template <class F>
VELA_QHD int staged_index(int e) {
    return e + ((e >> F::kPadLog2) << 2);
}

// ---- plain types: chunks of V elements (V = 1 when the row length is not a multiple of V) ----

template <int V>
struct FmtF32 {
    static constexpr int kBlockElems = V, kBlockBytes = 4 * V, kChunks = 1, kRuns = 1, kRunLen = V;
    static constexpr int kPadLog2 = 30, kUnroll = V == 4 ? 8 : 16;
    struct Raw {
        uint32_t w[V];
    };
    VELA_QHD static int run_start(int, int) { return 0; }
    VELA_QHD static Raw load(const uint8_t* blk, int) {
        Raw r;
        if constexpr (V == 4) {
            const Words4 q = ld128(blk);
            for (int i = 0; i < 4; ++i) r.w[i] = q.w[i];
        } else {
            r.w[0] = ld32(blk);
        }
        return r;
    }
    VELA_QHD static void decode(const Raw& r, int, float* v) {
        VELA_UNROLL
        for (int i = 0; i < V; ++i) v[i] = as_float(r.w[i]);
    }
};

template <int V, bool kBf16>
struct FmtHalf {
    static constexpr int kBlockElems = V, kBlockBytes = 2 * V, kChunks = 1, kRuns = 1, kRunLen = V;
    static constexpr int kPadLog2 = V == 8 ? 5 : 30, kUnroll = V == 8 ? 4 : 16;
    struct Raw {
        uint32_t w[(V + 1) / 2];
    };
    VELA_QHD static int run_start(int, int) { return 0; }
    VELA_QHD static Raw load(const uint8_t* blk, int) {
        Raw r;
        if constexpr (V == 8) {
            const Words4 q = ld128(blk);
            for (int i = 0; i < 4; ++i) r.w[i] = q.w[i];
        } else {
            r.w[0] = ld16(blk);
        }
        return r;
    }
    VELA_QHD static void decode(const Raw& r, int, float* v) {
        VELA_UNROLL
        for (int i = 0; i < V; ++i) {
            const uint32_t h = (r.w[i / 2] >> (16 * (i % 2))) & 0xFFFFu;
            v[i] = kBf16 ? as_float(h << 16) : half_to_float(h);
        }
    }
};

// ---- legacy 32-element blocks: one chunk per block, runs = low nibbles (elements 0..15) and
// high nibbles (16..31), or the 32 bytes of Q8_0. x = d * (q - kOffset) (+ m). ----

template <bool kMin, bool kFive>
struct FmtLegacy4 {  // Q4_0, Q4_1, Q5_0, Q5_1
    static constexpr int kOffset = kMin ? 0 : (kFive ? 16 : 8);
    static constexpr int kBlockElems = 32, kBlockBytes = 2 + 2 * kMin + 4 * kFive + 16;
    static constexpr int kChunks = 1, kRuns = 2, kRunLen = 16, kPadLog2 = 5, kUnroll = 2;
    struct Raw {
        uint32_t dm;     // d in the low half, m (kMin) in the high half
        uint32_t qh;     // kFive: bit i is bit 4 of element i
        uint32_t qs[4];  // byte j: element j (low nibble), j + 16 (high nibble)
    };
    VELA_QHD static int run_start(int, int r) { return 16 * r; }
    VELA_QHD static Raw load(const uint8_t* blk, int) {
        Raw r{};
        if constexpr (kMin) {  // 20 or 24 bytes: 4-byte aligned
            r.dm = ld32(blk);
            if constexpr (kFive) r.qh = ld32(blk + 4);
            for (int i = 0; i < 4; ++i) r.qs[i] = ld32(blk + 4 + 4 * kFive + 4 * i);
        } else {  // 18 or 22 bytes: 2-byte aligned
            uint32_t p[4 + kFive];
            load_head_payload(blk, r.dm, p);
            if constexpr (kFive) r.qh = p[0];
            for (int i = 0; i < 4; ++i) r.qs[i] = p[kFive + i];
        }
        return r;
    }
    VELA_QHD static void decode(const Raw& r, int, float* v) {
        const float d = half_to_float(r.dm & 0xFFFFu);
        const float m = kMin ? half_to_float(r.dm >> 16) : 0.0f;
        uint32_t lo[4], hi[4];
        VELA_UNROLL
        for (int j = 0; j < 4; ++j) {
            lo[j] = r.qs[j] & 0x0F0F0F0Fu;
            hi[j] = (r.qs[j] >> 4) & 0x0F0F0F0Fu;
            if constexpr (kFive) {
                lo[j] |= spread4_to_bit4(r.qh >> (4 * j));
                hi[j] |= spread4_to_bit4(r.qh >> (16 + 4 * j));
            }
        }
        // CPU: d * (q - kOffset) + m. Fast path: fl(d * (q - kOffset)) as one FMA of d * (2^15 +
        // q) - d * (2^15 + kOffset), exact since d (from fp16) has 11 significant bits and 2^15 +
        // kOffset at most 13. That FMA never returns -0, and without m the CPU's + 0.0f turns a
        // -0 into +0 too; with m a -0 m would keep a -0 product, so that block takes the other
        // path.
        const bool fast = finite(d) && !(kMin && as_bits(m) == 0x80000000u);
        const float off = k2p15 + static_cast<float>(kOffset);
        if (fast) {
            const float c = fmul(d, -off);
            VELA_UNROLL
            for (int i = 0; i < 16; ++i) {
                v[i] = ffma(d, magic15(lo[i / 4], i % 4), c);
                v[16 + i] = ffma(d, magic15(hi[i / 4], i % 4), c);
                if constexpr (kMin) {
                    v[i] = fadd(v[i], m);
                    v[16 + i] = fadd(v[16 + i], m);
                }
            }
        } else {
            VELA_UNROLL
            for (int i = 0; i < 16; ++i) {
                v[i] = fadd(fmul(d, fsub(magic15(lo[i / 4], i % 4), off)), m);
                v[16 + i] = fadd(fmul(d, fsub(magic15(hi[i / 4], i % 4), off)), m);
            }
        }
    }
};

struct FmtQ8_0 {
    static constexpr int kBlockElems = 32, kBlockBytes = 34, kChunks = 1, kRuns = 1, kRunLen = 32;
    static constexpr int kPadLog2 = 5, kUnroll = 2;
    struct Raw {
        uint32_t d;
        uint32_t qs[8];
    };
    VELA_QHD static int run_start(int, int) { return 0; }
    VELA_QHD static Raw load(const uint8_t* blk, int) {
        Raw r;
        load_head_payload(blk, r.d, r.qs);
        return r;
    }
    VELA_QHD static void decode(const Raw& r, int, float* v) {
        const float d = half_to_float(r.d);
        // int8 q + 128 is the byte with its top bit flipped: float(q) = (2^15 + (q + 128)) - (2^15
        // + 128).
        VELA_UNROLL
        for (int j = 0; j < 8; ++j) {
            const uint32_t u = r.qs[j] ^ 0x80808080u;
            VELA_UNROLL
            for (int b = 0; b < 4; ++b) v[4 * j + b] = fmul(d, fsub(magic15(u, b), k2p15 + 128.0f));
        }
    }
};

// ---- K-quants: 256-element super-blocks ----

// Q4_K / Q5_K: 8 chunks of 16 qs bytes; chunk c = 2p + h holds elements 64p + 16h + [0, 16)
// (low nibbles, sub-block 2p) and 64p + 32 + 16h + [0, 16) (high nibbles, sub-block 2p + 1).
// Blocks of 144 / 176 bytes keep every piece 16-byte aligned.
template <bool kFive>
struct FmtQ45K {
    static constexpr int kBlockElems = 256, kBlockBytes = kFive ? 176 : 144;
    static constexpr int kChunks = 8, kRuns = 2, kRunLen = 16, kPadLog2 = 6, kUnroll = 2;
    struct Raw {
        Words4 hdr;  // d, dmin, 12 scale bytes
        Words4 qs;
        Words4 qh;  // kFive: bytes 16h..16h+15 of qh (bit j: bit 4 of sub-block j)
    };
    VELA_QHD static int run_start(int c, int r) { return 64 * (c >> 1) + 16 * (c & 1) + 32 * r; }
    VELA_QHD static Raw load(const uint8_t* blk, int c) {
        Raw r{};
        const int p = c >> 1, h = c & 1;
        r.hdr = ld128(blk);
        if constexpr (kFive) {
            r.qh = ld128(blk + 16 + 16 * h);
            r.qs = ld128(blk + 48 + 32 * p + 16 * h);
        } else {
            r.qs = ld128(blk + 16 + 32 * p + 16 * h);
        }
        return r;
    }
    VELA_QHD static void decode(const Raw& r, int c, float* v) {
        const int p = c >> 1;
        const float d = half_to_float(r.hdr.w[0] & 0xFFFFu), dmin = half_to_float(r.hdr.w[0] >> 16);
        // 6-bit scales and mins: sub-blocks 0..3 in the low bits of bytes 0..3 / 4..7, 4..7 in
        // the nibbles of bytes 8..11 with their top 2 bits in the spare bits of bytes 0..7.
        const uint32_t s0 = r.hdr.w[1], s1 = r.hdr.w[2], s2 = r.hdr.w[3];
        const uint32_t sc =
            p < 2 ? (s0 & 0x3F3F3F3Fu) : ((s2 & 0x0F0F0F0Fu) | (((s0 >> 6) & 0x03030303u) << 4));
        const uint32_t mn = p < 2 ? (s1 & 0x3F3F3F3Fu)
                                  : (((s2 >> 4) & 0x0F0F0F0Fu) | (((s1 >> 6) & 0x03030303u) << 4));
        const int sh = 16 * (p & 1);
        float dl[2], ml[2];
        VELA_UNROLL
        for (int t = 0; t < 2; ++t) {
            dl[t] = fmul(d, static_cast<float>((sc >> (sh + 8 * t)) & 0xFFu));
            ml[t] = fmul(dmin, static_cast<float>((mn >> (sh + 8 * t)) & 0xFFu));
        }
        uint32_t lo[4], hi[4];
        VELA_UNROLL
        for (int j = 0; j < 4; ++j) {
            lo[j] = r.qs.w[j] & 0x0F0F0F0Fu;
            hi[j] = (r.qs.w[j] >> 4) & 0x0F0F0F0Fu;
            if constexpr (kFive) {
                lo[j] |= ((r.qh.w[j] >> (2 * p)) & 0x01010101u) << 4;
                hi[j] |= ((r.qh.w[j] >> (2 * p + 1)) & 0x01010101u) << 4;
            }
        }
        affine_2p23<16>(dl[0], ml[0], lo, v);
        affine_2p23<16>(dl[1], ml[1], hi, v + 16);
    }
};

// Q2_K: 16 chunks of 4 qs bytes; chunk c = 8 * half + g holds, for s = 0..3, elements 128 * half
// + 32s + 4g + [0, 4) (bits 2s of the bytes), sub-block 8 * half + 2s + g / 4. 84-byte blocks:
// 4-byte aligned.
struct FmtQ2K {
    static constexpr int kBlockElems = 256, kBlockBytes = 84, kChunks = 16, kRuns = 4, kRunLen = 4;
    static constexpr int kPadLog2 = 30, kUnroll = 4;
    struct Raw {
        uint32_t qs, sc[2], dd;
    };
    VELA_QHD static int run_start(int c, int r) { return 128 * (c >> 3) + 32 * r + 4 * (c & 7); }
    VELA_QHD static Raw load(const uint8_t* blk, int c) {
        Raw r;
        const int half = c >> 3, g = c & 7;
        r.qs = ld32(blk + 16 + 32 * half + 4 * g);
        r.sc[0] = ld32(blk + 8 * half);  // scales of sub-blocks 8 * half + 0..7
        r.sc[1] = ld32(blk + 8 * half + 4);
        r.dd = ld32(blk + 80);
        return r;
    }
    VELA_QHD static void decode(const Raw& r, int c, float* v) {
        const int g4 = (c & 7) >> 2;
        const float d = half_to_float(r.dd & 0xFFFFu), dmin = half_to_float(r.dd >> 16);
        VELA_UNROLL
        for (int s = 0; s < 4; ++s) {
            const uint32_t sc = (r.sc[s >> 1] >> (8 * (2 * (s & 1) + g4))) & 0xFFu;
            const float dl = fmul(d, static_cast<float>(sc & 0xFu));
            const float ml = fmul(dmin, static_cast<float>(sc >> 4));
            const uint32_t q = (r.qs >> (2 * s)) & 0x03030303u;
            VELA_UNROLL
            for (int b = 0; b < 4; ++b)
                v[4 * s + b] = fsub(fmul(dl, fsub(magic23(q, b), k2p23)), ml);
        }
    }
};

// Q3_K: chunks as Q2_K (2-bit qs at 32 + ..., the third bit in hmask), 16 signed 6-bit scales in
// 12 bytes at 96, d at 108. 110-byte blocks: 2-byte aligned.
struct FmtQ3K {
    static constexpr int kBlockElems = 256, kBlockBytes = 110, kChunks = 16, kRuns = 4, kRunLen = 4;
    static constexpr int kPadLog2 = 30, kUnroll = 4;
    struct Raw {
        uint32_t qs, hm, sc[3], d;
    };
    VELA_QHD static int run_start(int c, int r) { return 128 * (c >> 3) + 32 * r + 4 * (c & 7); }
    VELA_QHD static Raw load(const uint8_t* blk, int c) {
        Raw r;
        const int half = c >> 3, g = c & 7;
        uint32_t one[1];
        load_words_a2(blk + 32 + 32 * half + 4 * g, one);
        r.qs = one[0];
        load_words_a2(blk + 4 * g, one);
        r.hm = one[0];
        load_words_a2(blk + 96, r.sc);
        r.d = ld16(blk + 108);
        return r;
    }
    VELA_QHD static void decode(const Raw& r, int c, float* v) {
        const int half = c >> 3, g4 = (c & 7) >> 2;
        const float d = half_to_float(r.d);
        // Scales of sub-blocks 8 * half + 0..3 and + 4..7, biased by 32: low nibbles from bytes
        // 0..7 (nibble `half`), top 2 bits from bytes 8..11 (bit pair 2 * half + 0 / 1).
        const uint32_t u0 = r.sc[0], u1 = r.sc[1], u2 = r.sc[2];
        const uint32_t a =
            (((half ? u0 >> 4 : u0) & 0x0F0F0F0Fu)) | (((u2 >> (4 * half)) & 0x03030303u) << 4);
        const uint32_t b =
            (((half ? u1 >> 4 : u1) & 0x0F0F0F0Fu)) | (((u2 >> (4 * half + 2)) & 0x03030303u) << 4);
        VELA_UNROLL
        for (int s = 0; s < 4; ++s) {
            const uint32_t word = s < 2 ? a : b;  // sub-block 2s + g4 of the half
            const int scale = static_cast<int>((word >> (8 * (2 * (s & 1) + g4))) & 0xFFu) - 32;
            // 3-bit u = lo + 4 * hbit, value q = u - 4; the integer scale * q goes through the
            // mantissa of 1.5 * 2^23 (signed), then one rounding multiply by d as on the CPU.
            const uint32_t u =
                ((r.qs >> (2 * s)) & 0x03030303u) | (((r.hm >> (4 * half + s)) & 0x01010101u) << 2);
            const int base = 0x4B400000 - 4 * scale;
            VELA_UNROLL
            for (int k = 0; k < 4; ++k) {
                const int uk = static_cast<int>((u >> (8 * k)) & 0xFFu);
                v[4 * s + k] =
                    fmul(d, fsub(as_float(static_cast<uint32_t>(scale * uk + base)), 12582912.0f));
            }
        }
    }
};

// Q6_K: 16 chunks; chunk c = 8 * half + u holds ql bytes 64 * half + 8u + [0, 8): low nibbles
// are elements 128 * half + 8u + [0, 8) (run 0), high nibbles 128 * half + 64 + 8u + [0, 8) (run
// 1), with the top 2 bits in qh bytes 32 * half + 8 (u % 4) + [0, 8), bit pair u / 4 (run 0) or 2 +
// u / 4 (run 1). 210-byte blocks: 2-byte aligned.
struct FmtQ6K {
    static constexpr int kBlockElems = 256, kBlockBytes = 210, kChunks = 16, kRuns = 2, kRunLen = 8;
    static constexpr int kPadLog2 = 5, kUnroll = 4;
    struct Raw {
        uint32_t ql[2], qh[2];
        int sc[2];
        uint32_t d;
    };
    VELA_QHD static int run_start(int c, int r) { return 128 * (c >> 3) + 64 * r + 8 * (c & 7); }
    VELA_QHD static Raw load(const uint8_t* blk, int c) {
        Raw r;
        const int half = c >> 3, u = c & 7;
        load_words_a2(blk + 64 * half + 8 * u, r.ql);
        load_words_a2(blk + 128 + 32 * half + 8 * (u & 3), r.qh);
        r.sc[0] = ld_s8(blk + 192 + 8 * half + (u >> 1));
        r.sc[1] = ld_s8(blk + 192 + 8 * half + 4 + (u >> 1));
        r.d = ld16(blk + 208);
        return r;
    }
    VELA_QHD static void decode(const Raw& r, int c, float* v) {
        const int u = c & 7;
        const float d = half_to_float(r.d);
        VELA_UNROLL
        for (int run = 0; run < 2; ++run) {
            const float dl = fmul(d, static_cast<float>(r.sc[run]));
            const int hs = 2 * (u >> 2) + 4 * run;
            VELA_UNROLL
            for (int j = 0; j < 2; ++j) {
                const uint32_t q =
                    ((r.ql[j] >> (4 * run)) & 0x0F0F0F0Fu) | (((r.qh[j] >> hs) & 0x03030303u) << 4);
                VELA_UNROLL
                for (int b = 0; b < 4; ++b)
                    v[8 * run + 4 * j + b] = fmul(dl, fsub(magic23(q, b), k2p23 + 32.0f));
            }
        }
    }
};

using FmtQ4_0 = FmtLegacy4<false, false>;
using FmtQ4_1 = FmtLegacy4<true, false>;
using FmtQ5_0 = FmtLegacy4<false, true>;
using FmtQ5_1 = FmtLegacy4<true, true>;
using FmtQ4K = FmtQ45K<false>;
using FmtQ5K = FmtQ45K<true>;

}  // namespace vela::cuda_backend::quant
