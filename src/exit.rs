//! Exit codes (SPEC §5) and refusals.
//!
//! This is the only module that knows the numbers of the exit codes. Domain code returns a
//! [`Refusal`] (a gate that is closed, a reviewer that said no, …) or an `anyhow` error (I/O,
//! provider, internal), and [`classify`] maps either to an [`ExitKind`].

use std::fmt;

/// The exit codes of SPEC §5, the same for every command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExitKind {
    /// 0: done.
    Done,
    /// 1: failed: I/O, provider, deploy or internal error.
    Failed,
    /// 2: usage or configuration error.
    Usage,
    /// 3: gate closed: a prerequisite is missing or stale, or the task is locked.
    GateClosed,
    /// 4: a reviewer said NO, or its verdict was malformed.
    ReviewerNo,
    /// 5: the change set leaves the approved paths.
    ScopeViolation,
    /// 6: checks still failing after the fix loop.
    ChecksFailing,
    /// 7: the ledger or the tree differs from what was recorded or approved.
    Integrity,
}

impl ExitKind {
    /// The process exit code.
    #[must_use]
    pub fn code(self) -> u8 {
        match self {
            ExitKind::Done => 0,
            ExitKind::Failed => 1,
            ExitKind::Usage => 2,
            ExitKind::GateClosed => 3,
            ExitKind::ReviewerNo => 4,
            ExitKind::ScopeViolation => 5,
            ExitKind::ChecksFailing => 6,
            ExitKind::Integrity => 7,
        }
    }

    /// A short name for the code, used in `--json` outputs and test snapshots.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            ExitKind::Done => "done",
            ExitKind::Failed => "failed",
            ExitKind::Usage => "usage",
            ExitKind::GateClosed => "gate-closed",
            ExitKind::ReviewerNo => "reviewer-no",
            ExitKind::ScopeViolation => "scope-violation",
            ExitKind::ChecksFailing => "checks-failing",
            ExitKind::Integrity => "integrity",
        }
    }

    /// The worse of two outcomes: the one with the higher code, `Done` being best.
    #[must_use]
    pub fn worst(self, other: ExitKind) -> ExitKind {
        if other.code() > self.code() {
            other
        } else {
            self
        }
    }
}

impl fmt::Display for ExitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.code(), self.name())
    }
}

/// A refusal the user can act on: what is wrong and, where there is one, the command that fixes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}")]
pub struct Refusal {
    /// The exit code this refusal ends the command with.
    pub kind: ExitKind,
    /// What is missing or wrong, as one line.
    pub what: String,
    /// The command or action that would fix it.
    pub fix: Option<String>,
}

impl Refusal {
    /// A refusal of the given kind.
    pub fn new(kind: ExitKind, what: impl Into<String>) -> Self {
        Refusal {
            kind,
            what: what.into(),
            fix: None,
        }
    }

    /// Attaches the hint that names the fix.
    #[must_use]
    pub fn hint(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    /// A usage or configuration error (exit 2).
    pub fn usage(what: impl Into<String>) -> Self {
        Refusal::new(ExitKind::Usage, what)
    }

    /// A closed gate (exit 3).
    pub fn gate(what: impl Into<String>) -> Self {
        Refusal::new(ExitKind::GateClosed, what)
    }

    /// An integrity failure (exit 7).
    pub fn integrity(what: impl Into<String>) -> Self {
        Refusal::new(ExitKind::Integrity, what)
    }
}

/// Maps an error chain to its exit kind: the first [`Refusal`] in the chain decides, anything
/// else is a failure (exit 1).
#[must_use]
pub fn classify(err: &anyhow::Error) -> (ExitKind, Option<&Refusal>) {
    match err.chain().find_map(|e| e.downcast_ref::<Refusal>()) {
        Some(refusal) => (refusal.kind, Some(refusal)),
        None => (ExitKind::Failed, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_inside_context_keeps_its_kind() {
        let err = anyhow::Error::new(Refusal::gate("closed")).context("while running step 3");
        assert_eq!(classify(&err).0, ExitKind::GateClosed);
        let plain = anyhow::anyhow!("disk full");
        assert_eq!(classify(&plain).0, ExitKind::Failed);
    }

    #[test]
    fn codes_are_the_spec_table() {
        let all = [
            ExitKind::Done,
            ExitKind::Failed,
            ExitKind::Usage,
            ExitKind::GateClosed,
            ExitKind::ReviewerNo,
            ExitKind::ScopeViolation,
            ExitKind::ChecksFailing,
            ExitKind::Integrity,
        ];
        let codes: Vec<u8> = all.iter().map(|k| k.code()).collect();
        assert_eq!(codes, vec![0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(
            ExitKind::Done.worst(ExitKind::ReviewerNo),
            ExitKind::ReviewerNo
        );
    }
}
