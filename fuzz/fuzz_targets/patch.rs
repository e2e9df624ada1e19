#![no_main]
//! ```diff extraction and header normalization on arbitrary answers: never panics.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for block in gatekeeper::pipeline::patch::extract_diff_blocks(&text) {
        let _ = gatekeeper::pipeline::patch::normalize(&block);
    }
});
