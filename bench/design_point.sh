#!/usr/bin/env bash
# Benchmark of issue 3: the nightly run over the design point (200,000
# customers, 20 M sales lines, 10 M visits already in the warehouse). A
# 10-customer demo supplies the config, templates and inbox; bench/
# design_point.py writes the design point straight into its warehouse; then
# the nightly run is timed with /usr/bin/time -v, and its log gives each
# stage's time. Usage: bench/design_point.sh [CUSTOMERS LINES VISITS] [DIR]
# With BENCH_PG_ADMIN=postgres://user@host:port the warehouse is instead a
# fresh PostgreSQL database `sb_design_point` on that server, filled by
# bench/design_point_pg.sql with the same rows.
set -euo pipefail
customers=${1:-200000}
lines=${2:-20000000}
visits=${3:-10000000}
dir=${4:-bench-data/design-point}
bin=target/release/salesbatch
cargo build --release --quiet
rm -rf "$dir"
mkdir -p "$(dirname "$dir")"
"$bin" demo --dir "$dir" --customers 10 --as-of 2026-11-20 --no-run >/dev/null
export SALESBATCH_DEMO_ERP_URL="sqlite://$(cd "$dir" && pwd)/erp.db"
if [ -n "${BENCH_PG_ADMIN:-}" ]; then
  psql -q "$BENCH_PG_ADMIN/postgres" -c "DROP DATABASE IF EXISTS sb_design_point WITH (FORCE)" -c "CREATE DATABASE sb_design_point"
  export SALESBATCH_BENCH_WAREHOUSE="$BENCH_PG_ADMIN/sb_design_point"
  sed -i 's|^url = "sqlite://data/warehouse.db"|url_env = "SALESBATCH_BENCH_WAREHOUSE"|' "$dir/salesbatch.toml"
fi
"$bin" --config "$dir/salesbatch.toml" history >/dev/null # creates the warehouse
echo "== generate $customers customers, $lines lines, $visits visits"
if [ -n "${BENCH_PG_ADMIN:-}" ]; then
  started=$(date +%s)
  psql -q -v customers="$customers" -v lines="$lines" -v visits="$visits" \
    -f bench/design_point_pg.sql "$SALESBATCH_BENCH_WAREHOUSE"
  echo "generated in $(( $(date +%s) - started )) s"
  psql -qAt "$SALESBATCH_BENCH_WAREHOUSE" -c "SELECT pg_size_pretty(pg_database_size(current_database()))"
else
  python3 bench/design_point.py "$dir/data/warehouse.db" "$customers" "$lines" "$visits"
  du -sh "$dir/data"
fi
for phase in first second; do
  echo "== $phase nightly run"
  RUST_LOG=info /usr/bin/time -v "$bin" --config "$dir/salesbatch.toml" run nightly --as-of 2026-11-20 --no-email \
    >"$dir.$phase.out" 2>"$dir.$phase.log" || true
  grep -E '^run ' "$dir.$phase.out" || true
  # stage lines, without the log's colour codes
  sed 's/\x1b\[[0-9;]*m//g' "$dir.$phase.log" |
    grep -oE '(run started|ingest finished|metric inputs read|compute finished|snapshot saved|reports written).*' || true
  grep -E 'Elapsed \(wall|Maximum resident' "$dir.$phase.log"
done
