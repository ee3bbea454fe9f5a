//! The one integration-test binary.
mod cli;
mod config;
mod metrics;
mod report;
