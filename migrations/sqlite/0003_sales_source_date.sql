-- The metric reads scan the sales table sequentially, so the index on
-- (invoice_date, customer_id) served only a SQL source's ":since" window and
-- its latest date, while costing every inserted line a scattered B-tree
-- insert. (source, invoice_date) serves both and inserts a file's lines near
-- each other (docs/PERFORMANCE.md).
DROP INDEX sales_date;
CREATE INDEX sales_source_date ON sales (source, invoice_date);
