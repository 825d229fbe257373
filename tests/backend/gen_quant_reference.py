#!/usr/bin/env python3
"""Writes the dequantisation fixtures of tests/backend: for every weight type the CPU backend
supports, 2 rows x 512 elements of raw GGUF blocks (<TYPE>.bin) and what the `gguf` package's
own dequantizer makes of them (<TYPE>.f32, little-endian float32).

Types gguf can quantise are quantised from random normal data; for the K-quants (no quantiser
in gguf) blocks are random bytes with finite, moderate fp16 scales, which is every valid block.
Run from anywhere: python3 tests/backend/gen_quant_reference.py [--seed N]
"""
import argparse
import pathlib

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants
from gguf.constants import GGML_QUANT_SIZES

ROWS, K = 2, 512
OUT = pathlib.Path(__file__).resolve().parent / "data"

QUANTISABLE = [T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]
# Byte offsets of the fp16 super-block scales (d, dmin) inside each K-quant block.
K_SCALE_OFFSETS = {T.Q2_K: (80, 82), T.Q3_K: (108,), T.Q4_K: (0, 2), T.Q5_K: (0, 2), T.Q6_K: (208,)}


def random_k_blocks(qtype, rng):
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    n_blocks = ROWS * K // block_size
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for off in K_SCALE_OFFSETS[qtype]:
        scale = rng.uniform(-0.02, 0.02, size=n_blocks).astype(np.float16)
        raw[:, off:off + 2] = scale.view(np.uint8).reshape(n_blocks, 2)
    return raw.reshape(ROWS, -1)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    OUT.mkdir(exist_ok=True)
    for qtype in QUANTISABLE + list(K_SCALE_OFFSETS):
        if qtype in QUANTISABLE:
            data = rng.standard_normal((ROWS, K)).astype(np.float32)
            # Sprinkle exact zeros and a large outlier: all-zero blocks and clipping paths.
            data[0, :32] = 0.0
            data[1, 7] = 40.0
            raw = quants.quantize(data, qtype)
        else:
            raw = random_k_blocks(qtype, rng)
        raw = np.ascontiguousarray(raw).view(np.uint8)
        expected = quants.dequantize(raw, qtype).astype("<f4").reshape(ROWS, K)
        assert np.isfinite(expected).all(), qtype.name
        (OUT / f"{qtype.name}.bin").write_bytes(raw.tobytes())
        (OUT / f"{qtype.name}.f32").write_bytes(expected.tobytes())
    print(f"wrote fixtures for {len(QUANTISABLE) + len(K_SCALE_OFFSETS)} types to {OUT}")


if __name__ == "__main__":
    main()
