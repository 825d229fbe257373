#!/usr/bin/env python3
"""Writes small valid GGUF seed files for fuzz_gguf with the `gguf` Python package."""
import pathlib

import numpy as np
from gguf import GGUFWriter, GGMLQuantizationType
from gguf.quants import quantize

out = pathlib.Path(__file__).resolve().parent / "seeds/gguf"
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
w = GGUFWriter(str(out / "tiny_llama.gguf"), "llama")
w.add_block_count(1)
w.add_context_length(64)
w.add_embedding_length(32)
w.add_token_list(["<unk>", "<s>", "</s>", "a", "b"])
w.add_token_types([2, 3, 3, 1, 1])
w.add_array("test.ints", [1, 2, 3])
w.add_float64("test.f64", 0.5)
w.add_bool("test.bool", True)
w.add_tensor("token_embd.weight", rng.standard_normal((5, 32), dtype=np.float32))
q = quantize(rng.standard_normal((4, 32), dtype=np.float32), GGMLQuantizationType.Q4_1)
w.add_tensor("blk.0.attn_q.weight", q, raw_dtype=GGMLQuantizationType.Q4_1)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print("seeds in", out)
