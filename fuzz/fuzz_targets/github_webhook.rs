#![no_main]
//! GitHub webhook bodies (SPEC §8.5): the signature check and the CI-facts extraction never
//! panic on arbitrary bytes, and a branch-derived task id is always a valid task id.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let secret = b"fuzz-secret";
    let good = gatekeeper::server::github::signature(secret, data);
    assert!(gatekeeper::server::github::signature_valid(secret, data, Some(&good)));
    assert!(!gatekeeper::server::github::signature_valid(secret, data, None));
    if let Ok(payload) = serde_json::from_slice::<serde_json::Value>(data) {
        for event in ["check_suite", "check_run", "workflow_run", "push"] {
            if let Some((branch, _)) = gatekeeper::server::github::ci_facts(event, &payload, "d") {
                let _ = gatekeeper::server::github::task_of_branch(&branch);
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = gatekeeper::server::github::task_of_branch(text);
    }
});
