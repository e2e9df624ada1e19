//! The assumptions register (SPEC §7, seed 000's Assumptions Policy): `docs/assumptions.yaml` for
//! the workspace and `docs/ai-gated/assumptions/<TASK>.yaml` per task. Every assumption states its
//! rationale, its risk if wrong, how it will be validated, and its status (`pending` or
//! `confirmed`). An incomplete entry fails the self-audit; pending ones are listed.

use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

/// One assumption.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Assumption {
    /// `A-1`, …
    #[serde(default)]
    pub id: String,
    /// What is assumed.
    #[serde(default)]
    pub text: String,
    /// Why.
    #[serde(default)]
    pub rationale: String,
    /// What breaks if it is wrong.
    #[serde(default)]
    pub risk_if_wrong: String,
    /// How it will be checked.
    #[serde(default)]
    pub validation: String,
    /// `pending` or `confirmed`.
    #[serde(default)]
    pub status: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    assumptions: Vec<Assumption>,
}

/// The register as read from its files.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Register {
    /// The files read (workspace-relative).
    pub files: Vec<String>,
    /// Every assumption with the file and line it was found at.
    pub entries: Vec<(String, Assumption)>,
    /// Incomplete entries: `file: id: what is missing`.
    pub incomplete: Vec<String>,
    /// Pending entries: `id: text`.
    pub pending: Vec<String>,
}

/// What is missing from an entry. Pure.
#[must_use]
pub fn missing(a: &Assumption) -> Vec<&'static str> {
    let mut out = Vec::new();
    for (name, value) in [
        ("id", &a.id),
        ("text", &a.text),
        ("rationale", &a.rationale),
        ("risk_if_wrong", &a.risk_if_wrong),
        ("validation", &a.validation),
    ] {
        if value.trim().is_empty() {
            out.push(name);
        }
    }
    if !matches!(a.status.as_str(), "pending" | "confirmed") {
        out.push("status (pending|confirmed)");
    }
    out
}

/// Reads the workspace register and, with a task, the task's own.
///
/// # Errors
/// I/O errors; a file that does not parse is reported as incomplete, not as an error.
pub fn read(root: &Path, task: Option<&str>) -> Result<Register> {
    let mut reg = Register::default();
    let mut rels = vec!["docs/assumptions.yaml".to_owned()];
    if let Some(t) = task {
        rels.push(format!("docs/ai-gated/assumptions/{t}.yaml"));
    }
    for rel in rels {
        let Ok(text) = std::fs::read_to_string(root.join(&rel)) else {
            continue;
        };
        reg.files.push(rel.clone());
        match serde_norway::from_str::<File>(&text) {
            Ok(f) => {
                for a in f.assumptions {
                    let gaps = missing(&a);
                    if !gaps.is_empty() {
                        let id = if a.id.is_empty() {
                            "(no id)".to_owned()
                        } else {
                            a.id.clone()
                        };
                        reg.incomplete
                            .push(format!("{rel}: {id}: missing {}", gaps.join(", ")));
                    } else if a.status == "pending" {
                        reg.pending.push(format!("{}: {}", a.id, a.text));
                    }
                    reg.entries.push((rel.clone(), a));
                }
            }
            Err(e) => reg.incomplete.push(format!("{rel}: does not parse: {e}")),
        }
    }
    Ok(reg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completeness() {
        let full = Assumption {
            id: "A-1".into(),
            text: "t".into(),
            rationale: "r".into(),
            risk_if_wrong: "k".into(),
            validation: "v".into(),
            status: "pending".into(),
        };
        assert!(missing(&full).is_empty());
        let partial = Assumption {
            rationale: String::new(),
            status: "maybe".into(),
            ..full
        };
        assert_eq!(
            missing(&partial),
            vec!["rationale", "status (pending|confirmed)"]
        );
    }
}
