//! Canonical JSON: sorted keys, no insignificant whitespace (SPEC §8.2, journal lines).
//!
//! Serializing through `serde_json::Value` sorts keys because its map is a `BTreeMap` (as long as
//! no dependency turns on serde_json's `preserve_order`; a test below pins that).

use serde::Serialize;

/// Serializes `value` canonically.
///
/// # Panics
/// Never for the crate's own types: they serialize to JSON without failure (string keys only).
#[must_use]
pub fn to_canonical_string<T: Serialize>(value: &T) -> String {
    let v = serde_json::to_value(value).expect("gatekeeper's types serialize to JSON");
    serde_json::to_string(&v).expect("a JSON value serializes")
}

/// Canonical JSON, pretty-printed with two spaces and a final newline (files meant for people).
#[must_use]
pub fn to_canonical_pretty<T: Serialize>(value: &T) -> String {
    let v = serde_json::to_value(value).expect("gatekeeper's types serialize to JSON");
    let mut s = serde_json::to_string_pretty(&v).expect("a JSON value serializes");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    #[derive(serde::Serialize)]
    struct OutOfOrder {
        zeta: u8,
        alpha: u8,
        mid: Vec<u8>,
    }

    #[test]
    fn keys_are_sorted_and_compact() {
        let s = super::to_canonical_string(&OutOfOrder {
            zeta: 1,
            alpha: 2,
            mid: vec![3],
        });
        assert_eq!(s, r#"{"alpha":2,"mid":[3],"zeta":1}"#);
    }
}
