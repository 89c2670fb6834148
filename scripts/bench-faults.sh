#!/usr/bin/env bash
# Runs the multi-host fault suite (tests/multihost.rs) RUNS times (default 5) and prints,
# per fault, the time until the replica served again from the other host (median, min, max)
# and the most live copies seen at once in any run (must be 1). For BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
out=$(mktemp)
for r in $(seq 1 "$RUNS"); do
  cargo nextest run --test multihost --no-capture --test-threads 2 2>&1 | grep '^fault ' >>"$out"
done
python3 - "$out" <<'PY'
import re, sys, statistics
rows = {}
stays = {}
for line in open(sys.argv[1]):
    m = re.match(r"fault (.*?): serving from the other host after Some\(([\d.]+)(m?s)\); most live copies at once (\d+)", line)
    if m:
        t = float(m.group(2)) / (1000 if m.group(3) == "ms" else 1)
        r = rows.setdefault(m.group(1), ([], []))
        r[0].append(t); r[1].append(int(m.group(4)))
        continue
    m = re.match(r"fault (.*?): (\d+) of (\d+) samples not serving; most live copies (\d+)", line)
    if m:
        r = stays.setdefault(m.group(1), [0, 0, 0, 0])
        r[0] += 1; r[1] += int(m.group(2)); r[2] += int(m.group(3)); r[3] = max(r[3], int(m.group(4)))
print("| fault | runs | serving elsewhere: median | min | max | most live copies |")
print("| --- | --- | --- | --- | --- | --- |")
for f, (ts, cs) in rows.items():
    print(f"| {f} | {len(ts)} | {statistics.median(ts):.2f} s | {min(ts):.2f} s | {max(ts):.2f} s | {max(cs)} |")
for f, (n, down, total, most) in stays.items():
    print(f"| {f} | {n} | not moved: kept serving where it ran ({down} of {total} samples unanswered) | | | {most} |")
PY
rm -f "$out"
