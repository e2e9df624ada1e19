//! gatekeeper governs AI-assisted code changes in a git repository. It runs a pipeline of gated
//! steps (audit, decisions, plan, implement, test, review, verify, commit), each done by a role
//! bound to a provider; writes every output to a hash-chained ledger in `.ai-stack-trace/<TASK>/`;
//! refuses any step whose gate is closed; and checks mechanically that the git diff stays inside
//! the paths the decisions approved and that what lands is what the review approved.
//!
//! The binary is a thin shell over [`run`]. See `docs/ARCHITECTURE.md` for the codemap.

pub mod audit;
pub mod canonical;
pub mod ci;
pub mod cli;
pub mod config;
pub mod exit;
pub mod fsx;
pub mod hash;
pub mod inventory;
pub mod ledger;
pub mod pipeline;
pub mod process;
pub mod providers;
pub mod sample;
pub mod scope;
pub mod secrets;
pub mod selfaudit;
pub mod selftest;
pub mod server;
pub mod store;
pub mod telegram_poll;
pub mod verify_phase;
pub mod workspace;

use std::ffi::OsString;
use std::process::ExitCode;

/// Runs the command line and returns the process exit code (SPEC §5).
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    // git verifies objects when it receives them (`index-pack`); re-hashing every object libgit2
    // reads costs more than the diff itself on large trees (docs/performance.md).
    git2::opts::strict_hash_verification(false);
    let env = config::Env::from_process();
    ExitCode::from(cli::main(args, &env).code())
}
