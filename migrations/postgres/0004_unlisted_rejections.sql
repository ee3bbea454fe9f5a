-- A file lists its first 1,000 rejected rows; the rest are counted in one
-- note on the file (docs/DECISIONS.md: "Rejected rows are listed up to a
-- bound"), so that the run's count of rejected rows, and the count carried
-- for an unchanged file, stay exact. 0 for every other note.
ALTER TABLE file_notes ADD COLUMN unlisted_rejections BIGINT NOT NULL DEFAULT 0;
