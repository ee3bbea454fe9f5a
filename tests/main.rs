//! The one integration-test binary.
mod cli;
mod config;
mod deliver;
mod golden;
mod ingest;
mod metrics;
mod report;
mod schedule;
mod warehouse;
mod xlsb;
