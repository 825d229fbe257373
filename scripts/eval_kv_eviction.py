#!/usr/bin/env python3
"""Quality of Vela's KV-cache eviction policies: perplexity and passkey retrieval.

  eval_kv_eviction.py ppl     --vela BIN --model M --text FILE [FILE ...] --ctx C --chunks N \\
                              --policies none,window,sinks,h2o,tova --budgets 0.25,0.5 [--threads T]
  eval_kv_eviction.py passkey --vela BIN --model M --lengths 1024,2048,4096 --depths 0.1,0.5,0.9 \\
                              --trials K --policies ... --budgets ...
  eval_kv_eviction.py report  [--out DIR]      # tables and plots again from the saved JSON

Policy `none` runs once (no eviction flag: it works on binaries without --kv-evict) and is the
baseline; every other policy runs once per budget with `--kv-evict P --kv-budget B` (plus
`--kv-sinks N` when --sinks is given). Perplexity runs with `-b 16`: eviction happens once a
sequence's KV exceeds its budget by one block (16 tokens), so this scores like token-by-token
decoding. Each command is echoed before it runs; results go to --out (default /tmp/kv_eval) as
JSON, a markdown table and a PNG, all named after the model (and context for perplexity).

Passkey prompts (Mohtashami & Jaggi 2023, as in StreamingLLM): task line, filler sentences, the
needle at a relative depth of the filler, more filler, the question; greedy completion of
--gen tokens; success = the 5-digit key appears in the completion (spaces and commas ignored).
Token counting: `vela generate` reports "prompt: N tokens" on stderr, counted by the model's
own tokenizer. The script measures two short prompts (4 and 24 filler repetitions) once per
model to get tokens per repetition and the fixed overhead, sizes each prompt to its target
length from that line, and records every run's exact prompt token count from the same line.
"""
import argparse
import json
import random
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

TASK = ("There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. "
        "I will quiz you about the important information there.")
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
NEEDLE = "The pass key is {key}. Remember it. {key} is the pass key."
QUESTION = "What is the pass key? The pass key is"
PPL_RE = re.compile(r"PPL\s*=\s*([0-9.]+(?:[eE][-+]?\d+)?|nan|inf)(?:\s+over\s+(\d+)\s+scored)?", re.I)
PROMPT_RE = re.compile(r"prompt:\s*(\d+)\s+tokens")


def run(cmd):
    """Echoes and runs one command; stops the script with vela's own message if it fails."""
    print("$ " + shlex.join(cmd), flush=True)
    start = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        sys.exit(f"error: command exited with status {proc.returncode}:\n{tail}")
    return proc.stdout, proc.stderr, round(time.time() - start, 2)


def evict_flags(policy, budget, sinks):
    if policy == "none":
        return []
    return ["--kv-evict", policy, "--kv-budget", budget] + (["--kv-sinks", str(sinks)] if sinks is not None else [])


def configs(args):
    """(policy, budget) pairs: `none` once with budget None, every other policy per budget."""
    policies, budgets = args.policies.split(","), args.budgets.split(",")
    for b in budgets:
        v = float(b) if re.fullmatch(r"\d+|\d*\.\d+", b) else 0
        if not (0 < v < 1 or (v >= 1 and v == int(v))):
            sys.exit(f"error: budget {b!r} is neither a fraction in (0,1) nor an integer >= 1")
    return [("none", None)] * ("none" in policies) + [(p, b) for p in policies if p != "none" for b in budgets]


def base_cmd(args, sub):
    return [args.vela, sub, "-m", args.model, "-t", str(args.threads)]


def load(path, meta, resume):
    """Earlier runs of the same setup (same meta) when --resume, keyed by their command line."""
    if resume and path.exists():
        old = json.loads(path.read_text())
        if old["meta"] == meta:
            return {r["cmd"]: r for r in old["runs"]}
        print(f"note: {path} holds another setup; starting afresh", file=sys.stderr)
    return {}


def save(path, kind, meta, runs, earlier=None):
    """Writes this invocation's runs, then the earlier ones (--resume) it did not repeat."""
    keys = {r["cmd"] for r in runs}
    kept = [r for k, r in (earlier or {}).items() if k not in keys]
    path.write_text(json.dumps({"kind": kind, "meta": meta, "runs": runs + kept}, indent=1))


def cmd_ppl(args):
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = Path(args.text[0])
    if len(args.text) > 1:  # one longer text, for contexts the first file alone cannot fill
        text = out / "text_concat.txt"
        text.write_text("\n\n".join(Path(t).read_text() for t in args.text))
    meta = {"vela": args.vela, "model": args.model, "text": args.text, "ctx": args.ctx, "chunks": args.chunks,
            "batch": 16, "sinks": args.sinks}
    path = out / f"ppl_{Path(args.model).stem}_c{args.ctx}.json"
    done, runs = load(path, meta, args.resume), []
    for policy, budget in configs(args):
        cmd = (base_cmd(args, "perplexity") + ["-c", str(args.ctx), "-b", "16", "--chunks", str(args.chunks)]
               + evict_flags(policy, budget, args.sinks) + [str(text)])
        key = shlex.join(cmd)
        if key in done:
            runs.append(done[key])
            print(f"(saved) {key}")
            continue
        stdout, stderr, secs = run(cmd)
        m = PPL_RE.findall(stdout) or PPL_RE.findall(stderr)
        if not m:
            sys.exit(f"error: no 'PPL = ...' in vela's output:\n{stdout}\n{stderr}")
        ppl, scored = m[-1]
        runs.append({"policy": policy, "budget": budget, "ppl": float(ppl), "scored_tokens": int(scored or 0),
                     "seconds": secs, "cmd": key})
        print(f"  PPL {float(ppl):.4f} ({scored or '?'} scored tokens, {secs} s)", flush=True)
        save(path, "ppl", meta, runs, done)
    report_file(path)


def count_tokens(args, text, f):
    f.write_text(text)
    _, stderr, _ = run(base_cmd(args, "generate") + ["-c", str(len(text) // 2 + 256), "-n", "1", "--temp", "0",
                                                     "-f", str(f)])
    m = PROMPT_RE.search(stderr)
    if not m:
        sys.exit(f"error: no 'prompt: N tokens' on vela generate's stderr:\n{stderr}")
    return int(m.group(1))


def passkey_prompt(key, reps, depth):
    before = round(reps * depth)
    parts = [TASK, " ".join([FILLER] * before), NEEDLE.format(key=key), " ".join([FILLER] * (reps - before)), QUESTION]
    return "\n".join(p for p in parts if p)


def cmd_passkey(args):
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lengths = [int(x) for x in args.lengths.split(",")]
    depths = [float(x) for x in args.depths.split(",")]
    meta = {"vela": args.vela, "model": args.model, "lengths": lengths, "depths": depths, "trials": args.trials,
            "seed": args.seed, "gen": args.gen, "batch": args.batch, "sinks": args.sinks}
    stem = Path(args.model).stem
    path, prompts = out / f"passkey_{stem}.json", out / "prompts"
    prompts.mkdir(exist_ok=True)
    n4, n24 = (count_tokens(args, passkey_prompt("12345", r, 0.5), prompts / f"{stem}_count_{r}.txt") for r in (4, 24))
    per_rep = (n24 - n4) / 20
    overhead = n4 - 4 * per_rep
    meta["calibration"] = {"tokens_per_filler": per_rep, "overhead_tokens": overhead}
    print(f"calibration: {per_rep:.2f} tokens per filler repetition, {overhead:.1f} tokens of overhead")
    done, runs = load(path, meta, args.resume), []
    for length in lengths:
        reps = max(1, round((length - overhead) / per_rep))
        for depth in depths:
            for trial in range(args.trials):
                key = str(random.Random(f"{args.seed}/{length}/{depth}/{trial}").randint(10000, 99999))
                prompt = prompts / f"{stem}_{length}_{depth}_{trial}.txt"
                prompt.write_text(passkey_prompt(key, reps, depth))
                for policy, budget in configs(args):
                    cmd = (base_cmd(args, "generate") + ["-c", str(length + args.gen + 256), "-b", str(args.batch),
                           "-n", str(args.gen), "--temp", "0"] + evict_flags(policy, budget, args.sinks)
                           + ["-f", str(prompt)])
                    tag = shlex.join(cmd)
                    if tag in done and done[tag]["key"] == key:
                        runs.append(done[tag])
                        continue
                    stdout, stderr, secs = run(cmd)
                    m = PROMPT_RE.search(stderr)
                    ok = key in re.sub(r"[\s,]", "", stdout)
                    runs.append({"policy": policy, "budget": budget, "length": length, "depth": depth,
                                 "trial": trial, "key": key, "prompt_tokens": int(m.group(1)) if m else None,
                                 "output": stdout, "success": ok, "seconds": secs, "cmd": tag})
                    print(f"  {'OK  ' if ok else 'MISS'} key {key}, {runs[-1]['prompt_tokens']} prompt tokens, "
                          f"output {stdout!r} ({secs} s)", flush=True)
                    save(path, "passkey", meta, runs, done)
    report_file(path)


def sorted_budgets(runs):
    return sorted({r["budget"] for r in runs if r["budget"] is not None}, key=float)


NO_PLOTS = False  # --no-plots: tables and JSON only (`report` draws the plots later)


def plt_or_exit():
    if NO_PLOTS:
        return None
    try:
        import matplotlib
    except ImportError:
        sys.exit("error: matplotlib is missing (it draws the PNG plots): install it with "
                 "`pip install --user matplotlib` or `apt-get install python3-matplotlib`")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def report_ppl(data):
    meta, runs = data["meta"], data["runs"]
    base = next((r["ppl"] for r in runs if r["policy"] == "none"), None)
    lines = [f"Perplexity, {Path(meta['model']).name}, text {', '.join(Path(t).name for t in meta['text'])}, "
             f"ctx {meta['ctx']}, {meta['chunks']} chunks, -b {meta['batch']}"
             + (f", --kv-sinks {meta['sinks']}" if meta.get("sinks") is not None else "") + "\n",
             "| policy | budget | PPL | ΔPPL % vs none | scored tokens |", "|---|---|---:|---:|---:|"]
    for r in runs:
        delta = f"{100 * (r['ppl'] / base - 1):+.2f}" if base else "n/a"
        lines.append(f"| {r['policy']} | {r['budget'] or 'full'} | {r['ppl']:.4f} | {delta} | {r['scored_tokens']} |")
    table = "\n".join(lines) + "\n"
    budgets = sorted_budgets(runs)
    if base is None or not budgets:
        return table, None
    plt = plt_or_exit()
    if plt is None:
        return table, None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for policy in dict.fromkeys(r["policy"] for r in runs if r["policy"] != "none"):
        pts = {r["budget"]: r["ppl"] for r in runs if r["policy"] == policy}
        xs = [i for i, b in enumerate(budgets) if b in pts]
        ax.plot(xs, [100 * (pts[budgets[i]] / base - 1) for i in xs], marker="o", label=policy)
    ax.axhline(0, color="black", lw=0.8, ls="--", label=f"none (PPL {base:.3f})")
    ax.set(xticks=range(len(budgets)), xticklabels=budgets, xlabel="KV budget (--kv-budget)",
           ylabel="ΔPPL vs full cache (%)", title=f"{Path(meta['model']).stem}, ctx {meta['ctx']}")
    ax.grid(alpha=0.3)
    ax.legend()
    return table, fig


def report_passkey(data):
    meta, runs = data["meta"], data["runs"]
    lengths = sorted({r["length"] for r in runs})
    cal = meta.get("calibration", {})
    cell = {}
    for r in runs:
        cell.setdefault((r["policy"], r["budget"], r["length"]), []).append(r["success"])
    toks = {n: [r["prompt_tokens"] for r in runs if r["length"] == n and r["prompt_tokens"]] for n in lengths}
    head = [f"{n} (~{sum(toks[n]) // max(1, len(toks[n]))} tok)" for n in lengths]
    lines = [f"Passkey retrieval, {Path(meta['model']).name}: depths {meta['depths']}, {meta['trials']} trials each, "
             f"greedy {meta['gen']} tokens, -b {meta['batch']}, seed {meta['seed']}; "
             f"{cal.get('tokens_per_filler', 0):.2f} tokens per filler sentence group\n",
             "| policy | budget | " + " | ".join(head) + " |", "|---|---|" + "---:|" * len(lengths)]
    for pb in dict.fromkeys((r["policy"], r["budget"]) for r in runs):
        accs = [cell.get(pb + (n,), []) for n in lengths]
        lines.append(f"| {pb[0]} | {pb[1] or 'full'} | "
                     + " | ".join(f"{sum(a)}/{len(a)} ({100 * sum(a) / len(a):.0f}%)" if a else "" for a in accs) + " |")
    table = "\n".join(lines) + "\n"
    budgets = sorted_budgets(runs)
    if not budgets:  # nothing to plot against a budget
        return table, None
    plt = plt_or_exit()
    if plt is None:
        return table, None
    fig, axes = plt.subplots(1, len(lengths), figsize=(4.2 * len(lengths), 3.8), squeeze=False, sharey=True)
    for ax, n in zip(axes[0], lengths):
        for policy in dict.fromkeys(r["policy"] for r in runs):
            if policy == "none":
                a = cell.get(("none", None, n), [])
                if a:
                    ax.axhline(100 * sum(a) / len(a), color="black", lw=0.8, ls="--", label="none (full cache)")
                continue
            xs = [i for i, b in enumerate(budgets) if (policy, b, n) in cell]
            ax.plot(xs, [100 * sum(cell[(policy, budgets[i], n)]) / len(cell[(policy, budgets[i], n)]) for i in xs],
                    marker="o", label=policy)
        ax.set(xticks=range(len(budgets)), xticklabels=budgets, xlabel="KV budget (--kv-budget)",
               title=f"{n} tokens", ylim=(-5, 105))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("passkey accuracy (%)")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(Path(meta["model"]).stem)
    fig.tight_layout()
    return table, fig


def report_file(path):
    data = json.loads(path.read_text())
    table, fig = (report_ppl if data["kind"] == "ppl" else report_passkey)(data)
    path.with_suffix(".md").write_text(table)
    print("\n" + table + f"\nwritten: {path} {path.with_suffix('.md')}", end="")
    if fig is not None:
        fig.savefig(path.with_suffix(".png"), dpi=120, bbox_inches="tight")
        print(f" {path.with_suffix('.png')}", end="")
    print()


def cmd_report(args):
    files = sorted(Path(args.out).glob("*.json"))
    if not files:
        sys.exit(f"error: no results (*.json) in {args.out}")
    for f in files:
        report_file(f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2])
    sub = ap.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", default="/tmp/kv_eval", help="results folder (default /tmp/kv_eval)")
    common.add_argument("--no-plots", action="store_true",
                        help="write tables and JSON only (no matplotlib); `report` draws the plots later")
    run_args = argparse.ArgumentParser(add_help=False, parents=[common])
    run_args.add_argument("--vela", default="build/release/bin/vela", help="vela binary")
    run_args.add_argument("--model", required=True, help="GGUF model")
    run_args.add_argument("--policies", default="none,window,sinks,h2o,tova", help="comma-separated --kv-evict values")
    run_args.add_argument("--budgets", default="0.25,0.5", help="comma-separated --kv-budget values")
    run_args.add_argument("--sinks", type=int, help="pass --kv-sinks N to every evicting policy (default: vela's)")
    run_args.add_argument("--threads", type=int, default=1, help="vela -t (default 1)")
    run_args.add_argument("--resume", action="store_true", help="reuse runs of the same setup saved in --out")
    p = sub.add_parser("ppl", parents=[run_args], help="perplexity per policy x budget")
    p.add_argument("--text", nargs="+", required=True, help="text file(s); several are concatenated")
    p.add_argument("--ctx", type=int, default=512)
    p.add_argument("--chunks", type=int, default=8)
    p.set_defaults(func=cmd_ppl)
    p = sub.add_parser("passkey", parents=[run_args], help="passkey retrieval per policy x budget x length")
    p.add_argument("--lengths", default="1024,2048,4096", help="prompt lengths in tokens")
    p.add_argument("--depths", default="0.1,0.5,0.9", help="relative depths of the needle in the filler")
    p.add_argument("--trials", type=int, default=3, help="keys per length and depth")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gen", type=int, default=8, help="tokens generated (greedy)")
    p.add_argument("--batch", type=int, default=16, help="vela -b for the prompt (default 16, as decoding)")
    p.set_defaults(func=cmd_passkey)
    p = sub.add_parser("report", parents=[common], help="tables and plots again from --out's JSON")
    p.set_defaults(func=cmd_report)
    args = ap.parse_args()
    global NO_PLOTS
    NO_PLOTS = args.no_plots and args.command != "report"
    plt_or_exit()  # before any run, not after a long sweep
    if args.command != "report" and not (Path(args.vela).is_file() and Path(args.model).is_file()):
        sys.exit(f"error: no such vela binary or model: {args.vela}, {args.model}")
    args.func(args)


if __name__ == "__main__":
    main()
