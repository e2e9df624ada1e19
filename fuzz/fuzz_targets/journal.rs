#![no_main]
//! The journal reader (SPEC §2): never panics on arbitrary bytes, and whatever it accepts
//! re-encodes to exactly the input.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = gatekeeper::ledger::journal::parse_chain(data, "t") {
        let again: String = entries.iter().map(|e| format!("{}\n", e.encode())).collect();
        assert_eq!(again.as_bytes(), data);
    }
});
