-- As SQLite's migrations 0003 and 0004: a file's sales lines, visits and
-- survey answers are found by the id range its load recorded (ids come from a
-- shared sequence, so the range may also hold other sessions' rows; deletes
-- still filter on source and file) instead of a (source, file) index every
-- inserted row paid for. Files loaded before this migration have no range;
-- their rows are found by a full scan, once.
ALTER TABLE ingested_files ADD COLUMN first_row_id BIGINT;
ALTER TABLE ingested_files ADD COLUMN last_row_id BIGINT;
DROP INDEX sales_file;
DROP INDEX visits_file;
DROP INDEX satisfaction_file;
-- The metric reads scan sales sequentially; only a SQL source's `:since`
-- window and latest date look lines up by date, and a SQL source's file
-- name starts with `sql:`. Queries repeat the condition so the planner may
-- use the partial index.
DROP INDEX sales_date;
CREATE INDEX sales_sql_window ON sales (source, invoice_date) WHERE starts_with(file, 'sql:');
