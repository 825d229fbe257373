#!/usr/bin/env python3
"""Hugging Face transformers on the GPU, the peer of `vela bench --device cuda` at 7-8B shapes.

A Llama-3-8B-shaped model (the exact hyper-parameters of scripts/make_shape_gguf.py's
`llama3-8b`) with random bf16 weights, on one GPU: prefill of `-p` tokens (one forward over the
prompt, as llama-bench's pp) and decode of `-n` tokens after a one-token prompt (greedy, as
llama-bench's tg), each the median of `-r` runs after a warm-up. Decode runs three ways: the
default dynamic cache (eager), a static cache (eager), and a static cache with the forward
compiled by torch.compile (generate's compile_config, mode reduce-overhead: CUDA graphs), the
fastest setting transformers documents for generation. Prints one line per test:

    transformers | llama3-8b bf16 | tg128 static+compile | 123.4 t/s

    python3 scripts/bench_transformers.py -p 512,4096 -n 128 -r 3
"""
import argparse
import statistics
import sys
import time

import torch
import transformers

# scripts/make_shape_gguf.py, SHAPES["llama3-8b"]
LLAMA3_8B = dict(
    vocab_size=128256,
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    max_position_embeddings=8192,
    rms_norm_eps=1e-5,
    rope_theta=500000.0,
    tie_word_embeddings=False,
)


def timed(fn, runs: int) -> float:
    fn()  # warm-up (and compilation)
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-p", default="512", help="prompt lengths, comma-separated")
    ap.add_argument("-n", type=int, default=128, help="generated tokens")
    ap.add_argument("-r", type=int, default=3, help="timed runs per test")
    ap.add_argument("--layers", type=int, help="fewer layers (a quick check)")
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    args = ap.parse_args()

    cfg = dict(LLAMA3_8B)
    if args.layers:
        cfg["num_hidden_layers"] = args.layers
    config = transformers.LlamaConfig(**cfg)
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):  # weights normal(0, 0.02) (initializer_range), as the GGUF shapes
        model = transformers.LlamaForCausalLM(config).eval()
    name = f"llama3-8b bf16 ({torch.cuda.get_device_name()}, transformers {transformers.__version__}, torch {torch.__version__})"
    print(f"# {name}", flush=True)
    tag = "transformers | llama3-8b bf16"

    with torch.inference_mode():
        for p in [int(x) for x in args.p.split(",") if x]:
            ids = torch.randint(0, cfg["vocab_size"], (1, p), device="cuda")
            t = timed(lambda: model(ids, use_cache=False, logits_to_keep=1), args.r)
            print(f"{tag} | pp{p} eager | {p / t:.1f} t/s", flush=True)

        prompt = torch.randint(0, cfg["vocab_size"], (1, 1), device="cuda")
        n = args.n

        def generate(**kw):
            model.generate(prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                           pad_token_id=0, eos_token_id=None, **kw)

        t = timed(lambda: generate(), args.r)
        print(f"{tag} | tg{n} dynamic-cache eager | {n / t:.1f} t/s", flush=True)
        t = timed(lambda: generate(cache_implementation="static"), args.r)
        print(f"{tag} | tg{n} static-cache eager | {n / t:.1f} t/s", flush=True)
        if not args.no_compile:
            # generate() compiles the forward itself when given a static cache and a
            # compile_config (wrapping model.forward in torch.compile breaks its CUDA graphs:
            # "accessing tensor output of CUDAGraphs that has been overwritten").
            try:
                cc = transformers.CompileConfig(fullgraph=True, mode="reduce-overhead")
                generate(cache_implementation="static", compile_config=cc)  # compiles
                t = timed(lambda: generate(cache_implementation="static", compile_config=cc),
                          args.r)
                print(f"{tag} | tg{n} static-cache torch.compile | {n / t:.1f} t/s", flush=True)
            except Exception as e:  # report, do not hide: "where it works"
                print(f"{tag} | tg{n} static-cache torch.compile | failed: {type(e).__name__}: "
                      f"{str(e).splitlines()[0][:200]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
