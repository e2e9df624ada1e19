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

/// True when `text` is a JSON object exactly as [`to_canonical_string`] writes the value it
/// parses to — that is, `text == to_canonical_string(&serde_json::from_str::<Value>(text)?)` —
/// checked without building the value: no whitespace, keys in strictly increasing order, strings
/// escaped as serde_json escapes them, numbers printed as it prints them, and at most
/// `max_depth` nested objects and arrays (the object itself counts one). Allocates only to
/// decode keys holding escapes and to re-print numbers other than plain integers.
#[must_use]
pub fn is_canonical_object(text: &str, max_depth: usize) -> bool {
    text.starts_with('{') && canonical_value_end(text, 0, max_depth) == Some(text.len())
}

/// Where the canonical JSON value that starts at byte `at` of `text` ends (as in
/// [`is_canonical_object`], whose nesting limit `max_depth` applies to it); `None` when what
/// starts there is not one.
#[must_use]
pub fn canonical_value_end(text: &str, at: usize, max_depth: usize) -> Option<usize> {
    Scanner {
        text,
        bytes: text.as_bytes(),
        max_depth,
    }
    .value(at, 0)
}

/// A recursive-descent reader of canonical JSON; each method returns the index after what it
/// read, `None` when the text is not canonical (or not JSON).
struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    max_depth: usize,
}

impl<'a> Scanner<'a> {
    /// A value starting at `i`, inside `depth` objects and arrays.
    fn value(&self, i: usize, depth: usize) -> Option<usize> {
        match *self.bytes.get(i)? {
            b'{' => self.object(i, depth + 1),
            b'[' => self.array(i, depth + 1),
            b'"' => self.string(i).map(|(end, _)| end),
            b't' => self.literal(i, b"true"),
            b'f' => self.literal(i, b"false"),
            b'n' => self.literal(i, b"null"),
            b'-' | b'0'..=b'9' => self.number(i),
            _ => None,
        }
    }

    fn literal(&self, i: usize, word: &[u8]) -> Option<usize> {
        (self.bytes.get(i..i + word.len())? == word).then_some(i + word.len())
    }

    fn object(&self, i: usize, depth: usize) -> Option<usize> {
        if depth > self.max_depth {
            return None;
        }
        let mut i = i + 1;
        if *self.bytes.get(i)? == b'}' {
            return Some(i + 1);
        }
        let mut last: Option<std::borrow::Cow<'a, str>> = None;
        loop {
            if *self.bytes.get(i)? != b'"' {
                return None;
            }
            let (end, key) = self.string(i)?;
            // serde_json's map is sorted and holds each key once.
            if last.as_ref().is_some_and(|l| key <= *l) {
                return None;
            }
            last = Some(key);
            if *self.bytes.get(end)? != b':' {
                return None;
            }
            i = self.value(end + 1, depth)?;
            match *self.bytes.get(i)? {
                b',' => i += 1,
                b'}' => return Some(i + 1),
                _ => return None,
            }
        }
    }

    fn array(&self, i: usize, depth: usize) -> Option<usize> {
        if depth > self.max_depth {
            return None;
        }
        let mut i = i + 1;
        if *self.bytes.get(i)? == b']' {
            return Some(i + 1);
        }
        loop {
            i = self.value(i, depth)?;
            match *self.bytes.get(i)? {
                b',' => i += 1,
                b']' => return Some(i + 1),
                _ => return None,
            }
        }
    }

    /// A string at `i` (its opening quote), escaped as serde_json escapes: `\"`, `\\`, the
    /// short forms of backspace, tab, newline, form feed and carriage return, `\u00xx` (lower
    /// case) for the other control characters, and nothing else. Returns its decoded text.
    fn string(&self, i: usize) -> Option<(usize, std::borrow::Cow<'a, str>)> {
        let (mut j, mut from) = (i + 1, i + 1);
        let mut decoded: Option<String> = None;
        loop {
            j += plain_run(self.bytes.get(j..)?);
            match *self.bytes.get(j)? {
                b'"' => {
                    let tail = self.text.get(from..j)?;
                    let s = match decoded {
                        None => std::borrow::Cow::Borrowed(tail),
                        Some(mut d) => {
                            d.push_str(tail);
                            std::borrow::Cow::Owned(d)
                        }
                    };
                    return Some((j + 1, s));
                }
                b'\\' => {
                    let d = decoded.get_or_insert_with(String::new);
                    d.push_str(self.text.get(from..j)?);
                    let (c, len) = match *self.bytes.get(j + 1)? {
                        b'"' => ('"', 2),
                        b'\\' => ('\\', 2),
                        b'b' => ('\u{8}', 2),
                        b't' => ('\t', 2),
                        b'n' => ('\n', 2),
                        b'f' => ('\u{c}', 2),
                        b'r' => ('\r', 2),
                        b'u' => {
                            let hex = self.bytes.get(j + 2..j + 6)?;
                            let digit = |c: u8| match c {
                                b'0'..=b'9' => Some(c - b'0'),
                                b'a'..=b'f' => Some(c - b'a' + 10),
                                _ => None,
                            };
                            if hex[..2] != *b"00" {
                                return None;
                            }
                            let v = digit(hex[2])? * 16 + digit(hex[3])?;
                            if v >= 0x20 || matches!(v, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                                return None;
                            }
                            (char::from(v), 6)
                        }
                        _ => return None,
                    };
                    d.push(c);
                    j += len;
                    from = j;
                }
                // A control character, which serde_json escapes.
                _ => return None,
            }
        }
    }

    /// A number as serde_json prints the value it parses it to: a plain integer that fits its
    /// `u64` or `i64` as is; anything else (fractions, exponents, `-0`, integers it turns into
    /// floats) is parsed and printed again to compare.
    fn number(&self, i: usize) -> Option<usize> {
        let mut j = i;
        while self
            .bytes
            .get(j)
            .is_some_and(|c| matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
        {
            j += 1;
        }
        let token = self.text.get(i..j)?;
        let (negative, digits) = match token.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, token),
        };
        let plain = !digits.is_empty()
            && digits.bytes().all(|c| c.is_ascii_digit())
            && (!digits.starts_with('0') || (digits == "0" && !negative));
        if plain && let Ok(magnitude) = digits.parse::<u64>() {
            // As serde_json decides: a negative integer stays one if it fits an i64.
            #[allow(clippy::cast_possible_wrap)]
            let fits = !negative || (magnitude as i64).wrapping_neg() < 0;
            if fits {
                return Some(j);
            }
        }
        let value: serde_json::Value = serde_json::from_str(token).ok()?;
        (value.is_number() && serde_json::to_string(&value).ok()? == token).then_some(j)
    }
}

/// How many bytes at the start of `b` a JSON string holds as they are (not `"`, `\` or a
/// control character), looked at eight at a time.
fn plain_run(b: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // The lowest byte flagged is the first match: borrows only run upwards from a match.
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGHS;
    let equal = |x: u64, c: u8| below(x ^ (ONES * u64::from(c)), 1);
    let mut n = 0;
    for chunk in b.chunks_exact(8) {
        let Ok(bytes) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let x = u64::from_le_bytes(bytes);
        let special = below(x, 0x20) | equal(x, b'"') | equal(x, b'\\');
        if special != 0 {
            return n + special.trailing_zeros() as usize / 8;
        }
        n += 8;
    }
    n + b[n..]
        .iter()
        .take_while(|&&c| c != b'"' && c != b'\\' && c >= 0x20)
        .count()
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

    use proptest::prelude::*;
    use serde_json::Value;

    use super::{is_canonical_object, to_canonical_string};

    /// What [`is_canonical_object`] must answer: does the text survive a round trip through
    /// serde_json's `Value` unchanged?
    fn round_trips(text: &str) -> bool {
        serde_json::from_str::<Value>(text)
            .is_ok_and(|v| v.is_object() && to_canonical_string(&v) == text)
    }

    fn check(text: &str) {
        assert_eq!(
            is_canonical_object(text, 127),
            round_trips(text),
            "{text:?}"
        );
    }

    #[test]
    fn accepts_exactly_what_round_trips() {
        for text in [
            r#"{}"#,
            r#"{"a":1,"b":[true,false,null],"c":{"d":"e"}}"#,
            r#"{"b":1,"a":2}"#,
            r#"{"a":1,"a":2}"#,
            r#"{"a": 1}"#,
            r#" {"a":1}"#,
            r#"{"a":1} "#,
            r#"{"a":1}x"#,
            r#"{"a":01}"#,
            r#"{"a":-0}"#,
            r#"{"a":0}"#,
            r#"{"a":-1}"#,
            r#"{"a":1.0}"#,
            r#"{"a":1.50}"#,
            r#"{"a":1e3}"#,
            r#"{"a":1000.0}"#,
            r#"{"a":2.5e-7}"#,
            r#"{"a":18446744073709551615}"#,
            r#"{"a":18446744073709551616}"#,
            r#"{"a":-9223372036854775808}"#,
            r#"{"a":-9223372036854775809}"#,
            r#"{"a":"\u0041"}"#,
            r#"{"a":"\/"}"#,
            r#"{"a":"\n\t\r\b\f\"\\"}"#,
            r#"{"a":"\u000a"}"#,
            r#"{"a":"\u001f\u0000"}"#,
            r#"{"a":"\u001F"}"#,
            r#"{"a":"é\u007f"}"#,
            r#"{"a":"\ud83d\ude00"}"#,
            "{\"a\":\"\u{1}\"}",
            r#"{"\u0001":1,"a":2}"#,
            r#"{"a":2,"\u0001":1}"#,
            r#"{"a\"":1,"a":2}"#,
            r#"{"a":[1,2,]}"#,
            r#"{"a":tru}"#,
            r#"[1]"#,
            r#""a""#,
            r#"{"a":1,}"#,
            r#"{"a"}"#,
            r#"{"#,
        ] {
            check(text);
        }
    }

    proptest! {
        #[test]
        fn plain_run_stops_at_the_first_byte_a_string_escapes(
            b in prop::collection::vec(prop_oneof![0x20u8..=0xff, Just(b'"'), Just(b'\\'), 0u8..0x20], 0..40),
        ) {
            let expected = b.iter().take_while(|&&c| c != b'"' && c != b'\\' && c >= 0x20).count();
            prop_assert_eq!(super::plain_run(&b), expected);
        }
    }

    #[test]
    fn depth_as_serde_json_allows() {
        for n in [125, 126, 127, 128] {
            let text = format!("{{\"a\":{}{}}}", "[".repeat(n), "]".repeat(n));
            check(&text);
            assert_eq!(is_canonical_object(&text, 127), n < 127, "{n}");
        }
        assert!(is_canonical_object(r#"{"a":[[]]}"#, 3));
        assert!(!is_canonical_object(r#"{"a":[[]]}"#, 2));
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            ".{0,6}",
            "[\\x00-\\x1f\"\\\\/\\x7f]{0,4}",
            Just("a".to_owned()),
            Just("b".to_owned()),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            (-1000i32..1000, 0u32..4)
                .prop_map(|(m, e)| Value::from(f64::from(m) / f64::from(10u32.pow(e)))),
            text().prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(text(), inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    const SNIPPETS: [&str; 20] = [
        " ", "\\u0041", "\\/", "\\u00e9", "\\u001f", "\\u001F", "\\n", "\\u000a", "0", "-", ".0",
        "e1", "1", "\"", ",", "\"a\":1,", "}", "]", "\\", "\u{1}",
    ];

    proptest! {
        /// Canonical text is accepted, but for the floats serde_json's own parser does not read
        /// back exactly (without its `float_roundtrip` feature), which a round trip rejects too.
        #[test]
        fn canonical_text_is_judged_as_a_round_trip_judges_it(v in value()) {
            let text = to_canonical_string(&serde_json::json!({ "v": v }));
            prop_assert_eq!(is_canonical_object(&text, 127), round_trips(&text), "{}", text);
        }

        #[test]
        fn edited_text_is_judged_as_a_round_trip_judges_it(
            v in value(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), 0..SNIPPETS.len() + 1), 1..3),
        ) {
            let mut text = to_canonical_string(&serde_json::json!({ "v": v, "w": 1 }));
            for (at, what) in edits {
                let mut i = at.index(text.len() + 1);
                while !text.is_char_boundary(i) {
                    i -= 1;
                }
                match SNIPPETS.get(what) {
                    Some(s) => text.insert_str(i, s),
                    None if i < text.len() => {
                        text.remove(i);
                    }
                    None => {}
                }
            }
            prop_assert_eq!(is_canonical_object(&text, 127), round_trips(&text), "{:?}", text);
        }

        #[test]
        fn json_like_text_is_judged_as_a_round_trip_judges_it(
            text in "\\{[\\[\\]{},:\"\\\\a-c0-9.eE+\\- u]{0,16}\\}",
        ) {
            prop_assert_eq!(is_canonical_object(&text, 127), round_trips(&text), "{:?}", text);
        }
    }
}
