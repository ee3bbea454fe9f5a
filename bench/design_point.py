"""Fills a migrated salesbatch SQLite warehouse with the design point of
issue 3: CUSTOMERS customers, LINES sales lines and VISITS visits over the
two years up to 2026-11-20, written by SQLite itself (recursive CTEs) in date
order. Usage: python3 bench/design_point.py WAREHOUSE.db [CUSTOMERS LINES VISITS]"""
import sqlite3
import sys
import time

db = sys.argv[1]
customers, lines, visits = (int(a) for a in (sys.argv[2:5] or (200_000, 20_000_000, 10_000_000)))
reps = max(customers // 100, 1)
regions = ["华东", "华北", "华南", "西南"]
con = sqlite3.connect(db)
con.execute("PRAGMA journal_mode=WAL")
con.execute("PRAGMA synchronous=NORMAL")
con.execute("PRAGMA cache_size=-262144")
started = time.time()


def step(label, sql, *args):
    t = time.time()
    con.execute(sql, args)
    con.commit()
    print(f"{label}: {time.time() - t:.1f} s", flush=True)


step("reps", f"""
WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < {reps} - 1)
INSERT OR REPLACE INTO reps (rep_id, name, region, hire_date, email, source, file, sheet, row_no)
SELECT printf('B%05d', i), printf('代表%d', i), json_extract(?, printf('$[%d]', i % 4)), '2020-01-01',
       printf('b%d@example.com', i), 'bench', 'design-point', '', i FROM seq""", str(regions).replace("'", '"'))
step("customers", f"""
WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < {customers} - 1)
INSERT OR REPLACE INTO customers (customer_id, name, region, rep_id, customer_type, first_contact_date, signed_date,
       prospect_score, coverage_score, status, source, file, sheet, row_no)
SELECT printf('D%07d', i), printf('客户%d', i), json_extract(?, printf('$[%d]', (i % {reps}) % 4)),
       printf('B%05d', i % {reps}), '医院', date('2025-01-01', printf('+%d days', i % 690)), NULL,
       CASE WHEN i % 3 = 0 THEN NULL ELSE i % 100 END, NULL, NULL, 'bench', 'design-point', '', i FROM seq""",
     str(regions).replace("'", '"'))
# line i falls on day i·730/LINES after 2024-11-21; its customer is spread by a
# multiplicative hash, its product is one of the customer's ten
step("sales", f"""
WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < {lines} - 1)
INSERT INTO sales (invoice_date, customer_id, product_id, amount, quantity, invoice_no, line_no, rep_id,
       source, file, sheet, row_no)
SELECT date('2024-11-21', printf('+%d days', i * 730 / {lines})), printf('D%07d', (i * 7919) % {customers}),
       printf('P%03d', ((i * 7919) % {customers} * 13 + (i % 10) * 7) % 200),
       ((i * 2654435761) % 100000) / 100.0 - 100.0, 1 + i % 5, NULL, NULL,
       CASE WHEN i % 4 = 0 THEN printf('B%05d', (i * 7) % {reps}) END, 'bench', 'design-point', '', i FROM seq""")
step("visits", f"""
WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < {visits} - 1)
INSERT INTO visits (visit_date, rep_id, customer_id, visit_type, outcome, source, file, sheet, row_no)
SELECT date('2024-11-21', printf('+%d days', i * 730 / {visits})), printf('B%05d', ((i * 104729) % {customers}) % {reps}),
       printf('D%07d', (i * 104729) % {customers}), CASE i % 5 WHEN 0 THEN 'phone' ELSE 'face_to_face' END, NULL,
       'bench', 'design-point', '', i FROM seq""")
for table in ("customers", "reps", "sales", "visits"):
    print(table, con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
print(f"generated in {time.time() - started:.0f} s")
