#!/usr/bin/env bash
# Benchmark: generate a demo of N customers, then time a cold nightly run
# (ingest + compute + report, empty warehouse) and a warm rerun (every file
# unchanged) with /usr/bin/time -v. Usage: bench/run.sh [CUSTOMERS] [DIR]
set -euo pipefail
n=${1:-20000}
dir=${2:-bench-data/demo-$n}
bin=target/release/salesbatch
cargo build --release --quiet
rm -rf "$dir"
mkdir -p "$(dirname "$dir")"
echo "== generate + first run ($n customers)"
/usr/bin/time -v "$bin" demo --dir "$dir" --customers "$n" --as-of 2026-11-20 >/dev/null 2>"$dir.gen.log" || true
export SALESBATCH_DEMO_ERP_URL="sqlite://$(cd "$dir" && pwd)/erp.db"
rm -rf "$dir/data" "$dir/out"
for phase in cold warm; do
  echo "== $phase run"
  /usr/bin/time -v "$bin" --config "$dir/salesbatch.toml" run nightly --as-of 2026-11-20 --no-email \
    >"$dir.$phase.out" 2>"$dir.$phase.log" || true
  grep -E '^run ' "$dir.$phase.out"
  grep -E 'Elapsed \(wall|Maximum resident' "$dir.$phase.log"
done
du -sh "$dir/inbox" "$dir/erp.db" "$dir/data"
