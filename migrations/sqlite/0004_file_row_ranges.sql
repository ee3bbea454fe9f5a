-- A file's sales lines, visits and survey answers are inserted in one
-- transaction, so their rowids lie between the lowest and highest rowid that
-- load produced. Recording that range lets a changed file's rows be found by
-- a rowid range scan instead of a (source, file) index that every inserted
-- row paid for (docs/PERFORMANCE.md). Files loaded before this migration have
-- no range; their rows are found by a full scan, once.
ALTER TABLE ingested_files ADD COLUMN first_row_id INTEGER;
ALTER TABLE ingested_files ADD COLUMN last_row_id INTEGER;
DROP INDEX sales_file;
DROP INDEX visits_file;
DROP INDEX satisfaction_file;
-- Only a SQL source's lines are looked up by date (its `:since` window and
-- latest date), and every SQL source's file name starts with `sql:`: a
-- partial index keeps file lines, the bulk of a load, out of it. Queries
-- repeat the index's condition so the planner may use it.
DROP INDEX sales_source_date;
CREATE INDEX sales_sql_window ON sales (source, invoice_date) WHERE substr(file, 1, 4) = 'sql:';
