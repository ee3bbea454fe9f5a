#!/usr/bin/env bash
# Ingest benchmark: xlsx and CSV timed separately against calamine alone.
#
# Generates the demo with N customers (files only), loads its masters once,
# then for each format copies that warehouse and times an ingest-only job
# over just that format's sales files with /usr/bin/time -v. The baseline is
# examples/calamine_read.rs: the same xlsx files read cell by cell with
# calamine's streaming reader, on the same number of threads, doing nothing
# else. examples/ingest_parse.rs runs salesbatch's own reader, coercion and
# id checks over the same files without the warehouse, so the gap between
# calamine and a full ingest splits into parsing and storing.
# Usage: bench/ingest.sh [CUSTOMERS] [DIR]
set -euo pipefail
n=${1:-20000}
dir=$(realpath -m "${2:-bench-data/ingest-$n}")
bin=$PWD/target/release/salesbatch
cargo build --release --quiet --bin salesbatch --example calamine_read --example ingest_parse
rm -rf "$dir"
mkdir -p "$dir"
"$bin" demo --dir "$dir/demo" --customers "$n" --as-of 2026-11-20 --no-run >/dev/null

masters='
[[sources]]
name = "reps"
dataset = "reps"
kind = "excel"
path = "demo/inbox/reps/*.xlsx"
columns = { rep_id = "代表编码", name = "姓名", region = "大区", hire_date = "入职日期", email = "邮箱" }
[[sources]]
name = "customers"
dataset = "customers"
kind = "excel"
path = "demo/inbox/customers/*.xlsx"
columns = { customer_id = "客户编码", name = "客户名称", region = "大区", rep_id = "负责代表", customer_type = "客户类型", first_contact_date = "首次接触日期", signed_date = "签约日期", prospect_score = "潜力评分", coverage_score = "覆盖评分", status = "状态" }
[[jobs]]
name = "load"
cron = "0 0 1 * * *"
steps = ["ingest"]
'
write_config() { # name, warehouse, extra sources
  printf '[warehouse]\nurl = "sqlite://%s"\n%s\n%s\n' "$2" "$masters" "$3" >"$dir/$1.toml"
}
write_pg_config() { # name, extra sources; the URL comes from BENCH_PG_URL
  printf '[warehouse]\nurl_env = "BENCH_PG_URL"\n%s\n%s\n' "$masters" "$2" >"$dir/$1.toml"
}
write_config masters "$dir/masters.db" ""
"$bin" --config "$dir/masters.toml" run load --as-of 2026-11-20 >/dev/null

xlsx_source='
[[sources]]
name = "distributor-flow"
dataset = "sales"
kind = "excel"
path = "demo/inbox/flow/*.xlsx"
columns = { invoice_date = "日期", customer_id = "客户编码", product_id = "产品编码", quantity = "数量", amount = "金额" }'
csv_source='
[[sources]]
name = "distributor-flow-csv"
dataset = "sales"
kind = "csv"
path = "demo/inbox/flow_csv/*.csv"
encoding = "gbk"
columns = { invoice_date = "销售日期", customer_id = "终端编码", product_id = "品规编码", quantity = "数量", amount = "销售金额" }'

echo "== $n customers"
echo "-- calamine alone (xlsx)"
/usr/bin/time -v target/release/examples/calamine_read "$dir"/demo/inbox/flow/*.xlsx 2>"$dir/calamine.log"
grep -E 'Elapsed \(wall|Maximum resident|Percent of CPU' "$dir/calamine.log"
echo "-- calamine alone, with formula metadata as salesbatch reads (xlsx)"
/usr/bin/time -v target/release/examples/calamine_read --formulas "$dir"/demo/inbox/flow/*.xlsx 2>"$dir/calamine-formulas.log"
grep -E 'Elapsed \(wall|Maximum resident|Percent of CPU' "$dir/calamine-formulas.log"
for fmt in xlsx csv; do
  src_var="${fmt}_source"
  for ext in "" -wal -shm; do
    if [ -f "$dir/masters.db$ext" ]; then cp "$dir/masters.db$ext" "$dir/$fmt.db$ext"; fi
  done
  write_config "$fmt" "$dir/$fmt.db" "${!src_var}"
  src_name=$(grep -m1 -oP '(?<=name = ")[^"]+' <<<"${!src_var}")
  echo "-- salesbatch parse only, no warehouse ($fmt)"
  /usr/bin/time -v target/release/examples/ingest_parse "$dir/$fmt.toml" "$src_name" 2>"$dir/$fmt-parse.log"
  grep -E 'Elapsed \(wall|Maximum resident|Percent of CPU' "$dir/$fmt-parse.log"
  echo "-- salesbatch ingest ($fmt)"
  /usr/bin/time -v "$bin" --config "$dir/$fmt.toml" run load --as-of 2026-11-20 >"$dir/$fmt.out" 2>"$dir/$fmt.log" || true
  grep -E '^run ' "$dir/$fmt.out"
  grep -E 'Elapsed \(wall|Maximum resident|Percent of CPU' "$dir/$fmt.log"
done
# The same two loads into a PostgreSQL warehouse (each its own database),
# when a server answers on 127.0.0.1:5432.
if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  for fmt in xlsx csv; do
    src_var="${fmt}_source"
    db="salesbatch_bench_ingest_$fmt"
    psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" 2>/dev/null
    export BENCH_PG_URL="postgres://postgres@127.0.0.1:5432/$db"
    write_pg_config "pg-masters" ""
    "$bin" --config "$dir/pg-masters.toml" run load --as-of 2026-11-20 >/dev/null 2>&1
    write_pg_config "pg-$fmt" "${!src_var}"
    echo "-- salesbatch ingest into PostgreSQL ($fmt)"
    /usr/bin/time -v "$bin" --config "$dir/pg-$fmt.toml" run load --as-of 2026-11-20 >"$dir/pg-$fmt.out" 2>"$dir/pg-$fmt.log" || true
    grep -E '^run ' "$dir/pg-$fmt.out"
    grep -E 'Elapsed \(wall|Maximum resident|Percent of CPU' "$dir/pg-$fmt.log"
  done
fi
du -sh "$dir"/demo/inbox/flow "$dir"/demo/inbox/flow_csv
