-- As SQLite's migration 0006.
-- A run's data quality (its rejected rows and its notes on loaded files) is
-- what its ingest step found. A run without that step (a report-only job, a
-- dry run) shows the data quality of the latest run that had it, which
-- `quality_run` records: the run's own id once its ingest saved its rows,
-- the other run's id for a run that borrowed them, NULL for a run that had
-- none (every run recorded before this migration).
ALTER TABLE runs ADD COLUMN quality_run BIGINT;
-- Notes on files that loaded (docs/DECISIONS.md: file notes), per run, as
-- rejections are; an unchanged file's notes are carried into the next run.
CREATE TABLE file_notes (
    run_id BIGINT NOT NULL,
    source TEXT NOT NULL,
    file TEXT NOT NULL,
    sheet TEXT NOT NULL,
    note TEXT NOT NULL
);
CREATE INDEX file_notes_run ON file_notes (run_id);
