#![no_main]
//! The decisions parser (SPEC §3) on arbitrary text: never panics, and a YES always comes with at
//! least one allowed path.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let doc = gatekeeper::pipeline::decisions::parse_decisions_doc(&text);
    if doc.verdict.is_yes() {
        assert!(!doc.decisions.allowed.is_empty());
    }
    for glob in doc.decisions.allowed.iter().chain(&doc.decisions.forbidden) {
        let _ = gatekeeper::scope::validate_glob(glob);
    }
});
