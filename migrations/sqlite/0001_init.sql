-- Canonical datasets (SPEC §4), each row with its provenance.
CREATE TABLE reps (
    rep_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    region TEXT NOT NULL,
    hire_date TEXT,
    email TEXT,
    source TEXT NOT NULL, file TEXT NOT NULL, sheet TEXT NOT NULL, row_no INTEGER NOT NULL
);
CREATE TABLE customers (
    customer_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    region TEXT NOT NULL,
    rep_id TEXT NOT NULL,
    customer_type TEXT,
    first_contact_date TEXT,
    signed_date TEXT,
    prospect_score REAL,
    coverage_score REAL,
    status TEXT,
    source TEXT NOT NULL, file TEXT NOT NULL, sheet TEXT NOT NULL, row_no INTEGER NOT NULL
);
CREATE TABLE sales (
    id INTEGER PRIMARY KEY,
    invoice_date TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    amount REAL NOT NULL,
    quantity REAL,
    invoice_no TEXT,
    line_no TEXT,
    rep_id TEXT,
    source TEXT NOT NULL, file TEXT NOT NULL, sheet TEXT NOT NULL, row_no INTEGER NOT NULL
);
CREATE UNIQUE INDEX sales_invoice_line ON sales (invoice_no, line_no)
    WHERE invoice_no IS NOT NULL AND line_no IS NOT NULL;
CREATE INDEX sales_file ON sales (source, file);
CREATE INDEX sales_date ON sales (invoice_date, customer_id);
CREATE TABLE visits (
    id INTEGER PRIMARY KEY,
    visit_date TEXT NOT NULL,
    rep_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    visit_type TEXT,
    outcome TEXT,
    source TEXT NOT NULL, file TEXT NOT NULL, sheet TEXT NOT NULL, row_no INTEGER NOT NULL
);
CREATE INDEX visits_file ON visits (source, file);
CREATE INDEX visits_date ON visits (visit_date);
CREATE TABLE targets (
    rep_id TEXT NOT NULL,
    month TEXT NOT NULL,
    sales_target REAL,
    new_customer_target REAL,
    source TEXT NOT NULL, file TEXT NOT NULL, sheet TEXT NOT NULL, row_no INTEGER NOT NULL,
    PRIMARY KEY (rep_id, month)
);
CREATE TABLE satisfaction (
    id INTEGER PRIMARY KEY,
    customer_id TEXT NOT NULL,
    date TEXT NOT NULL,
    score REAL NOT NULL,
    source TEXT NOT NULL, file TEXT NOT NULL, sheet TEXT NOT NULL, row_no INTEGER NOT NULL
);
CREATE INDEX satisfaction_file ON satisfaction (source, file);

-- One row per file (or SQL source) as last loaded.
CREATE TABLE ingested_files (
    source TEXT NOT NULL,
    file TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    rows_loaded INTEGER NOT NULL,
    rows_rejected INTEGER NOT NULL,
    unknown_ids INTEGER NOT NULL,
    loaded_at TEXT NOT NULL,
    PRIMARY KEY (source, file)
);

CREATE TABLE runs (
    run_id INTEGER PRIMARY KEY,
    job TEXT NOT NULL,
    as_of TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL,
    counts TEXT NOT NULL DEFAULT '{}',
    rules TEXT NOT NULL DEFAULT '{}',
    error TEXT
);

CREATE TABLE rejections (
    run_id INTEGER NOT NULL,
    source TEXT NOT NULL,
    file TEXT NOT NULL,
    sheet TEXT NOT NULL,
    row_no INTEGER NOT NULL,
    cell TEXT NOT NULL,
    column_name TEXT NOT NULL,
    value TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX rejections_run ON rejections (run_id);

-- Per-run snapshot of computed tiers (history is reproducible).
CREATE TABLE tier_snapshots (
    run_id INTEGER NOT NULL,
    as_of TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (run_id, customer_id)
);
-- Other computed tables of a run, as JSON documents.
CREATE TABLE metric_snapshots (
    run_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (run_id, kind)
);

CREATE TABLE deliveries (
    job TEXT NOT NULL,
    as_of TEXT NOT NULL,
    recipient TEXT NOT NULL,
    region TEXT NOT NULL,
    run_id INTEGER NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    message_id TEXT,
    error TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (job, as_of, recipient, region)
);

CREATE TABLE job_locks (
    job TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    acquired_at TEXT NOT NULL
);
