#!/usr/bin/env bash
# Benchmark: a night whose one bad date format rejects a whole export. Runs
# the mini fixture (tests/fixtures/mini) with its sales.csv followed by N
# lines whose dates are all invalid (`2026/13/01`), so the file is refused
# by `max_reject_ratio`, and reports wall time, peak RSS and the sizes of
# what the run stored and wrote (docs/PERFORMANCE.md: rejected rows).
# Usage: bench/rejections.sh [LINES] [DIR]; BIN=path runs that binary
# instead of building this checkout's (an earlier commit's, to compare).
set -euo pipefail
n=${1:-1000000}
dir=${2:-bench-data/rejections-$n}
bin=${BIN:-target/release/salesbatch}
[ -n "${BIN:-}" ] || cargo build --release --quiet
rm -rf "$dir"
mkdir -p "$dir"
cp -r tests/fixtures/mini/. "$dir/"
python3 - "$dir/inbox/sales.csv" "$n" <<'PY'
import sys
path, n = sys.argv[1], int(sys.argv[2])
with open(path, "a", encoding="utf-8") as f:
    line = "2026/13/01,C1,P1,1,100,\n"
    for start in range(0, n, 100_000):
        f.write(line * min(100_000, n - start))
PY
echo "== run (mini fixture + $n rejected lines)"
/usr/bin/time -v "$bin" --config "$dir/salesbatch.toml" run nightly --as-of 2026-11-20 --no-email \
  >"$dir.out" 2>"$dir.log" || true
grep -E '^run ' "$dir.out"
echo "stderr lines starting with \`rejected:\`: $(grep -c '^rejected: ' "$dir.log" || true)"
grep -E 'Elapsed \(wall|Maximum resident' "$dir.log"
du -sh "$dir/inbox/sales.csv" "$dir/data"
ls -l "$dir"/out/2026-11-20/nightly/*.xlsx | awk '{print $5, $9}'
