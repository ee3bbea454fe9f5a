-- bench/design_point.py for a PostgreSQL warehouse: the same customers, reps,
-- sales lines and visits, value for value, written by the server itself.
-- Usage: psql -v customers=200000 -v lines=20000000 -v visits=10000000 -f bench/design_point_pg.sql DBURL
\set ON_ERROR_STOP on
\timing on
\set reps '(greatest(:customers / 100, 1))'
INSERT INTO reps (rep_id, name, region, hire_date, email, source, file, sheet, row_no)
SELECT 'B' || lpad(i::text, 5, '0'), '代表' || i, (ARRAY['华东', '华北', '华南', '西南'])[i % 4 + 1], DATE '2020-01-01',
       'b' || i || '@example.com', 'bench', 'design-point', '', i
FROM generate_series(0, :reps - 1) AS i
ON CONFLICT (rep_id) DO NOTHING;
INSERT INTO customers (customer_id, name, region, rep_id, customer_type, first_contact_date, signed_date,
       prospect_score, coverage_score, status, source, file, sheet, row_no)
SELECT 'D' || lpad(i::text, 7, '0'), '客户' || i, (ARRAY['华东', '华北', '华南', '西南'])[(i % :reps) % 4 + 1],
       'B' || lpad((i % :reps)::text, 5, '0'), '医院', DATE '2025-01-01' + (i % 690)::int, NULL,
       CASE WHEN i % 3 = 0 THEN NULL ELSE i % 100 END, NULL, NULL, 'bench', 'design-point', '', i
FROM generate_series(0, :customers - 1) AS i
ON CONFLICT (customer_id) DO NOTHING;
-- line i falls on day i·730/LINES after 2024-11-21; its customer is spread by
-- a multiplicative hash, its product is one of the customer's ten
INSERT INTO sales (invoice_date, customer_id, product_id, amount, quantity, invoice_no, line_no, rep_id,
       source, file, sheet, row_no)
SELECT DATE '2024-11-21' + (i * 730 / :lines)::int, 'D' || lpad(((i * 7919) % :customers)::text, 7, '0'),
       'P' || lpad(((((i * 7919) % :customers) * 13 + (i % 10) * 7) % 200)::text, 3, '0'),
       (((i * 2654435761) % 100000) / 100.0 - 100.0)::float8, 1 + i % 5, NULL, NULL,
       CASE WHEN i % 4 = 0 THEN 'B' || lpad(((i * 7) % :reps)::text, 5, '0') END, 'bench', 'design-point', '', i
FROM generate_series(0::bigint, :lines - 1) AS i;
INSERT INTO visits (visit_date, rep_id, customer_id, visit_type, outcome, source, file, sheet, row_no)
SELECT DATE '2024-11-21' + (i * 730 / :visits)::int, 'B' || lpad((((i * 104729) % :customers) % :reps)::text, 5, '0'),
       'D' || lpad(((i * 104729) % :customers)::text, 7, '0'), CASE i % 5 WHEN 0 THEN 'phone' ELSE 'face_to_face' END,
       NULL, 'bench', 'design-point', '', i
FROM generate_series(0::bigint, :visits - 1) AS i;
VACUUM ANALYZE;
SELECT (SELECT count(*) FROM customers) AS customers, (SELECT count(*) FROM reps) AS reps,
       (SELECT count(*) FROM sales) AS sales, (SELECT count(*) FROM visits) AS visits;
