-- PostgreSQL warehouse: the same tables as the SQLite one, with real DATE
-- columns. Amounts are DOUBLE PRECISION like SQLite's REAL so both backends
-- compute the same numbers.
CREATE TABLE reps (
    rep_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    region TEXT NOT NULL,
    hire_date DATE,
    email TEXT,
    source TEXT NOT NULL, file TEXT NOT NULL, sheet TEXT NOT NULL, row_no BIGINT NOT NULL
);
CREATE TABLE customers (
    customer_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    region TEXT NOT NULL,
    rep_id TEXT NOT NULL,
    customer_type TEXT,
    first_contact_date DATE,
    signed_date DATE,
    prospect_score DOUBLE PRECISION,
    coverage_score DOUBLE PRECISION,
    status TEXT,
    source TEXT NOT NULL, file TEXT NOT NULL, sheet TEXT NOT NULL, row_no BIGINT NOT NULL
);
CREATE TABLE sales (
    id BIGSERIAL PRIMARY KEY,
    invoice_date DATE NOT NULL,
    customer_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    amount DOUBLE PRECISION NOT NULL,
    quantity DOUBLE PRECISION,
    invoice_no TEXT,
    line_no TEXT,
    rep_id TEXT,
    source TEXT NOT NULL, file TEXT NOT NULL, sheet TEXT NOT NULL, row_no BIGINT NOT NULL
);
CREATE UNIQUE INDEX sales_invoice_line ON sales (invoice_no, line_no)
    WHERE invoice_no IS NOT NULL AND line_no IS NOT NULL;
CREATE INDEX sales_file ON sales (source, file);
CREATE INDEX sales_date ON sales (invoice_date, customer_id);
CREATE TABLE visits (
    id BIGSERIAL PRIMARY KEY,
    visit_date DATE NOT NULL,
    rep_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    visit_type TEXT,
    outcome TEXT,
    source TEXT NOT NULL, file TEXT NOT NULL, sheet TEXT NOT NULL, row_no BIGINT NOT NULL
);
CREATE INDEX visits_file ON visits (source, file);
CREATE INDEX visits_date ON visits (visit_date);
CREATE TABLE targets (
    rep_id TEXT NOT NULL,
    month TEXT NOT NULL,
    sales_target DOUBLE PRECISION,
    new_customer_target DOUBLE PRECISION,
    source TEXT NOT NULL, file TEXT NOT NULL, sheet TEXT NOT NULL, row_no BIGINT NOT NULL,
    PRIMARY KEY (rep_id, month)
);
CREATE TABLE satisfaction (
    id BIGSERIAL PRIMARY KEY,
    customer_id TEXT NOT NULL,
    date DATE NOT NULL,
    score DOUBLE PRECISION NOT NULL,
    source TEXT NOT NULL, file TEXT NOT NULL, sheet TEXT NOT NULL, row_no BIGINT NOT NULL
);
CREATE INDEX satisfaction_file ON satisfaction (source, file);

CREATE TABLE ingested_files (
    source TEXT NOT NULL,
    file TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    rows_loaded BIGINT NOT NULL,
    rows_rejected BIGINT NOT NULL,
    unknown_ids BIGINT NOT NULL,
    loaded_at TEXT NOT NULL,
    PRIMARY KEY (source, file)
);

CREATE TABLE runs (
    run_id BIGSERIAL PRIMARY KEY,
    job TEXT NOT NULL,
    as_of DATE NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL,
    counts TEXT NOT NULL DEFAULT '{}',
    rules TEXT NOT NULL DEFAULT '{}',
    error TEXT
);

CREATE TABLE rejections (
    run_id BIGINT NOT NULL,
    source TEXT NOT NULL,
    file TEXT NOT NULL,
    sheet TEXT NOT NULL,
    row_no BIGINT NOT NULL,
    cell TEXT NOT NULL,
    column_name TEXT NOT NULL,
    value TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX rejections_run ON rejections (run_id);

CREATE TABLE tier_snapshots (
    run_id BIGINT NOT NULL,
    as_of DATE NOT NULL,
    customer_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (run_id, customer_id)
);
CREATE TABLE metric_snapshots (
    run_id BIGINT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (run_id, kind)
);

CREATE TABLE deliveries (
    job TEXT NOT NULL,
    as_of DATE NOT NULL,
    recipient TEXT NOT NULL,
    region TEXT NOT NULL,
    run_id BIGINT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    message_id TEXT,
    error TEXT,
    updated_at TEXT NOT NULL,
    spool TEXT,
    PRIMARY KEY (job, as_of, recipient, region)
);

CREATE TABLE job_locks (
    job TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    acquired_at TEXT NOT NULL
);
