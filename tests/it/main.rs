//! The one integration test binary (STYLE §4.1): every suite is a module here.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly by design"
)]

mod audit;
mod ci;
mod cli_checks;
mod cli_concurrency;
mod cli_gates;
mod cli_ingest;
mod cli_integrity;
mod cli_json;
mod cli_scope;
mod cli_snapshots;
mod cli_steps;
mod cli_usage;
mod cli_verdicts;
mod dashboard;
mod pipeline_live;
mod protocol;
mod providers;
mod reports;
mod server_api;
mod server_crash;
mod server_sse;
mod server_support;
mod server_verify_phase;
mod smoke;
mod support;
mod tamper;
mod telegram_e2e;
mod telegram_poll;
mod webhooks;
mod webhooks_verify_phase;
