#![no_main]
//! The verdict parser (SPEC §2): never panics; YES only when the last non-blank line is exactly
//! the verdict and no other line starts with a verdict key.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let verdict = gatekeeper::pipeline::verdict::parse_verdict(&text, "CLAUDE_FINAL_OK");
    if verdict.is_yes() {
        let mut lines = text.lines().filter(|l| !l.trim().is_empty()).collect::<Vec<_>>();
        assert_eq!(lines.pop().map(str::trim_end), Some("CLAUDE_FINAL_OK: YES"));
        let keys = gatekeeper::pipeline::verdict::VERDICT_KEYS;
        assert!(lines.iter().all(|l| !keys.iter().any(|k| l.trim_start().starts_with(k))));
    }
});
