//! Contract files (SPEC §2): `contract/<NAME>` holding `<NAME>:<TASK>` and a newline, written only
//! by gatekeeper when a step earns it. Writing needs a [`ContractPermit`], which only the pipeline
//! engine can mint (ARCHITECTURE invariant 4).

use std::collections::BTreeMap;

use anyhow::Result;
use serde_json::json;

use super::Ledger;
use super::journal::{Entry, events};
use crate::fsx;
use crate::hash::sha256_hex;
use crate::pipeline::ContractPermit;

/// The ledger-relative path of a contract.
#[must_use]
pub fn rel_path(name: &str) -> String {
    format!("contract/{name}")
}

/// The exact bytes of a contract.
#[must_use]
pub fn content(name: &str, task: &str) -> String {
    format!("{name}:{task}\n")
}

/// Writes a contract and journals it.
///
/// # Errors
/// I/O errors.
pub fn write(ledger: &mut Ledger, _permit: &ContractPermit, step: u32, name: &str) -> Result<()> {
    let rel = rel_path(name);
    let bytes = content(name, ledger.task().as_str());
    fsx::write_atomic(&ledger.path(&rel), bytes.as_bytes())?;
    let mut files = BTreeMap::new();
    files.insert(rel, sha256_hex(bytes.as_bytes()));
    let data = json!({ "contract": name });
    let serde_json::Value::Object(data) = data else {
        unreachable!("json! of an object")
    };
    ledger.append(Some(step), events::CONTRACT_WRITTEN, files, data)
}

/// Withdraws a contract (its step is being re-run): removes the file and journals it.
///
/// # Errors
/// I/O errors.
pub fn revoke(ledger: &mut Ledger, step: u32, name: &str, reason: &str) -> Result<()> {
    fsx::remove_file(&ledger.path(&rel_path(name)))?;
    ledger.event(
        Some(step),
        events::CONTRACT_REVOKED,
        json!({ "contract": name, "reason": reason }),
    )
}

/// True when the journal's last word on `name` is `contract_written`.
#[must_use]
pub fn is_journalled(entries: &[Entry], name: &str) -> bool {
    entries
        .iter()
        .rev()
        .find(|e| {
            (e.event == events::CONTRACT_WRITTEN || e.event == events::CONTRACT_REVOKED)
                && e.data_str("contract") == Some(name)
        })
        .is_some_and(|e| e.event == events::CONTRACT_WRITTEN)
}
