#!/usr/bin/env bash
# A/B of two `vela` binaries on the same model: `vela bench` pp/tg, alternating A and B for
# several rounds so drifts of a shared machine hit both alike. Prints each round and the
# medians with the B/A ratio.
#   scripts/bench_ab.sh OLD_VELA NEW_VELA [rounds] [extra vela bench flags...]
set -euo pipefail
a="$1"; b="$2"; rounds="${3:-3}"; shift 3 || shift $#
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
for r in $(seq "$rounds"); do
    for side in a b; do
        bin=$a; [ "$side" = b ] && bin=$b
        "$bin" bench -t 2 -p 512 -n 128 -r 3 "$@" 2>/dev/null | grep -E "^\| .*(pp|tg)[0-9]" |
            awk -v s="$side" -F'|' '{gsub(/ /,"",$0); print s, $0}' >> "$tmp/rows"
    done
done
cat "$tmp/rows"
python3 - "$tmp/rows" "$a" "$b" <<'PY'
import re, statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
vals = {}
for side, line in rows:
    cells = [c for c in line.split("|") if c]
    test = next(c for c in cells if re.fullmatch(r"(pp|tg)\d+", c))
    speed = float(re.match(r"[\d.]+", cells[-1]).group())
    vals.setdefault((test, side), []).append(speed)
print(f"| test | A {sys.argv[2]} t/s | B {sys.argv[3]} t/s | B/A |")
print("|---|---|---|---|")
for test in sorted({t for t, _ in vals}):
    a, b = statistics.median(vals[(test, "a")]), statistics.median(vals[(test, "b")])
    print(f"| {test} | {a:.1f} | {b:.1f} | {b / a:.3f} |")
PY
