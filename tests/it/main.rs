//! The one integration test binary (STYLE §4.1): every suite is a module here.

mod ci;
mod cli_gates;
mod cli_ingest;
mod cli_steps;
mod cli_usage;
mod providers;
mod smoke;
mod support;
mod tamper;
