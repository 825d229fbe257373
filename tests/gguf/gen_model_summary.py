#!/usr/bin/env python3
"""Writes tests/gguf/data/smollm2_summary.json from the `gguf` Python package's reading of the
default model, the independent reference for test_gguf_file's DefaultModelMatchesPythonReader."""
import json
import pathlib
import sys

from gguf import GGUFReader, GGUFValueType

root = pathlib.Path(__file__).resolve().parents[2]
model = sys.argv[1] if len(sys.argv) > 1 else root / "models/SmolLM2-135M-Instruct.Q4_1.gguf"
r = GGUFReader(model)
ints, strings = {}, {}
for key, field in r.fields.items():
    if key.startswith("GGUF."):
        continue
    t = field.types[0]
    if t == GGUFValueType.STRING:
        strings[key] = field.contents()
    elif t in (GGUFValueType.UINT8, GGUFValueType.INT8, GGUFValueType.UINT16, GGUFValueType.INT16,
               GGUFValueType.UINT32, GGUFValueType.INT32, GGUFValueType.UINT64, GGUFValueType.INT64):
        ints[key] = int(field.contents())
base = r.tensors[0].data_offset
summary = {
    "tensors": [{"name": t.name, "type": int(t.tensor_type), "shape": [int(d) for d in t.shape],
                 "data_offset_rel": int(t.data_offset - base)} for t in r.tensors],
    "ints": ints,
    "strings": strings,
    "n_tokens": len(r.fields["tokenizer.ggml.tokens"].data),
    "token_1000": r.fields["tokenizer.ggml.tokens"].contents()[1000],
}
out = root / "tests/gguf/data/smollm2_summary.json"
out.parent.mkdir(exist_ok=True)
out.write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
print(f"wrote {out}")
