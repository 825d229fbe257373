#!/usr/bin/env python3
"""llama.cpp's chunked perplexity through `llama-cpp-python` (pip), for machines without the
`llama-perplexity` binary: the method of llama.cpp's tools/perplexity (and of `vela perplexity`):
the text is tokenized once (BOS when the model adds one), cut into chunks of n_ctx tokens, each
chunk's first token replaced by BOS and evaluated from an empty cache, and the negative
log-likelihood of the tokens of every chunk's second half is averaged.

usage: scripts/perplexity_llama_cpp.py MODEL.gguf TEXT [n_ctx=512] [threads=2]
"""
import math
import sys

import numpy as np
from llama_cpp import Llama


def main():
    model, path = sys.argv[1], sys.argv[2]
    n_ctx = int(sys.argv[3]) if len(sys.argv) > 3 else 512
    threads = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    llm = Llama(model_path=model, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, n_threads=threads,
                logits_all=True, verbose=False)
    add_bos = llm._model.add_bos_token()
    tokens = llm.tokenize(open(path, "rb").read(), add_bos=add_bos, special=False)
    n_chunks = len(tokens) // n_ctx
    first, nll, count = n_ctx // 2, 0.0, 0
    for c in range(n_chunks):
        chunk = tokens[c * n_ctx:(c + 1) * n_ctx]
        if add_bos:
            chunk[0] = llm.token_bos()
        llm.reset()
        llm.eval(chunk)
        logits = np.array(llm.scores[:n_ctx], dtype=np.float64)
        for j in range(first, n_ctx - 1):
            row = logits[j]
            mx = row.max()
            nll -= row[chunk[j + 1]] - mx - math.log(np.exp(row - mx).sum())
            count += 1
        print(f"[{c + 1}]{math.exp(nll / count):.4f}", end=" ", file=sys.stderr, flush=True)
    print(f"\nFinal estimate: PPL = {math.exp(nll / count):.4f} over {count} scored tokens "
          f"({n_chunks} chunks of {n_ctx})")


if __name__ == "__main__":
    main()
