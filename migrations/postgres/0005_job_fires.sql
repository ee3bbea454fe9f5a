-- As SQLite's migration 0008.
-- A scheduled fire (a job at one cron instant) is claimed by the first
-- instance that reaches it. The job lock alone keeps two runs from
-- overlapping, but a run that ended before another instance's tick (its
-- clock a second behind, its scheduler busy) left the lock free, and that
-- instance ran the same fire again. Catch-ups claim `<instant> catch-up`.
CREATE TABLE job_fires (
    job TEXT NOT NULL,
    fire_at TEXT NOT NULL,
    holder TEXT NOT NULL,
    claimed_at TEXT NOT NULL,
    PRIMARY KEY (job, fire_at)
);
