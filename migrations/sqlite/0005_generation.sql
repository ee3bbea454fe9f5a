-- Every file load adds one to `n` in its own transaction. The metric read
-- steps through sales on one connection per core, and SQLite gives each
-- connection its own snapshot: a reader reads `n` on all of its connections
-- and starts again when they differ, so a load committed between two of them
-- (another job ingesting meanwhile) cannot tear one run's inputs.
CREATE TABLE warehouse_generation (
    only INTEGER PRIMARY KEY CHECK (only = 1),
    n INTEGER NOT NULL
);
INSERT INTO warehouse_generation (only, n) VALUES (1, 0);
