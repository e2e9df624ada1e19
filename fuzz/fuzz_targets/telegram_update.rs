#![no_main]
//! Telegram `Update` bodies (SPEC §8.6): parsing never panics, and a text message always maps to
//! the same 12-hex-digit task id.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(update) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Ok(message) = gatekeeper::server::telegram::text_message(&update) {
            let record = gatekeeper::server::telegram::record_of(&message);
            assert_eq!(record.task_id.len(), 12);
        }
    }
});
