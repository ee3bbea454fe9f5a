//! salesbatch: nightly sales ETL and per-region reporting.
//!
//! The pipeline reads as the module tree: `config` → `ingest` (sources) →
//! `warehouse` (storage) → `metrics` (pure transforms) → `report` (workbooks,
//! HTML) → `deliver` (email); `jobs` runs those steps for one date and is
//! called alike by `schedule` and by a manual `run`.

pub mod cli;
pub mod config;
pub mod deliver;
pub mod demo;
pub mod ingest;
pub mod jobs;
pub mod metrics;
pub mod report;
pub mod schedule;
pub mod text;
pub mod warehouse;

pub use cli::{run, Cli, ExitCode, LogFormat};
