//! Verdict lines (SPEC §2): the last non-blank line of a review must be exactly `KEY: YES` or
//! `KEY: NO` (trailing whitespace ignored). Any other ending, or a verdict line anywhere else as
//! well, is malformed and treated as NO. Pure: no I/O.

use serde::Serialize;

/// Every verdict key gatekeeper knows. A line starting with any of them before the last line is
/// a smuggled verdict.
pub const VERDICT_KEYS: &[&str] = &["CLAUDE_DECISIONS_OK", "CLAUDE_FINAL_OK"];

/// A parsed verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", content = "reason", rename_all = "lowercase")]
pub enum Verdict {
    /// `KEY: YES`.
    Yes,
    /// `KEY: NO`.
    No,
    /// Anything else; the reason says what was wrong. Treated as NO.
    Malformed(String),
}

impl Verdict {
    /// True only for a well-formed YES.
    #[must_use]
    pub fn is_yes(&self) -> bool {
        matches!(self, Verdict::Yes)
    }
}

/// Parses the verdict of `text` for `key` (e.g. `CLAUDE_DECISIONS_OK`).
#[must_use]
pub fn parse_verdict(text: &str, key: &str) -> Verdict {
    let lines: Vec<&str> = text.lines().collect();
    let Some(last_index) = lines.iter().rposition(|l| !l.trim().is_empty()) else {
        return Verdict::Malformed(format!(
            "the answer is empty; it must end with `{key}: YES` or `{key}: NO`"
        ));
    };
    for (i, line) in lines.iter().enumerate().take(last_index) {
        let trimmed = line.trim_start();
        if let Some(found) = VERDICT_KEYS.iter().find(|k| trimmed.starts_with(*k)) {
            return Verdict::Malformed(format!(
                "a verdict line `{found}…` appears on line {} as well as at the end; exactly one verdict line, the last, is allowed",
                i + 1
            ));
        }
    }
    let last = lines[last_index].trim_end();
    if last == format!("{key}: YES") {
        Verdict::Yes
    } else if last == format!("{key}: NO") {
        Verdict::No
    } else {
        let shown: String = last.chars().take(80).collect();
        Verdict::Malformed(format!(
            "the last non-blank line is `{shown}`, not exactly `{key}: YES` or `{key}: NO`"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: &str = "CLAUDE_DECISIONS_OK";

    fn check(text: &str, expected: &str) {
        let got = match parse_verdict(text, K) {
            Verdict::Yes => "yes".to_owned(),
            Verdict::No => "no".to_owned(),
            Verdict::Malformed(r) => format!("malformed: {r}"),
        };
        assert!(got.starts_with(expected), "{text:?}: got {got}");
    }

    #[test]
    fn verdicts() {
        check("body\nCLAUDE_DECISIONS_OK: YES\n", "yes");
        check("body\nCLAUDE_DECISIONS_OK: YES   \n\n  \n", "yes");
        check("body\nCLAUDE_DECISIONS_OK: NO", "no");
        check("", "malformed");
        check("body only\n", "malformed");
        check("CLAUDE_DECISIONS_OK: yes\n", "malformed");
        check("CLAUDE_DECISIONS_OK:YES\n", "malformed");
        check(" CLAUDE_DECISIONS_OK: YES\n", "malformed");
        check("CLAUDE_DECISIONS_OK: YES\nmore text\n", "malformed");
        check(
            "CLAUDE_DECISIONS_OK: YES\nCLAUDE_DECISIONS_OK: YES\n",
            "malformed: a verdict line",
        );
        check(
            "x\n  CLAUDE_FINAL_OK: YES\nCLAUDE_DECISIONS_OK: YES\n",
            "malformed: a verdict line",
        );
        check("CLAUDE_DECISIONS_OK: YES NO\n", "malformed");
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_yes_needs_exact_last_line(s in "(?s).{0,400}") {
            let v = parse_verdict(&s, K);
            if v == Verdict::Yes {
                let last = s.lines().rev().find(|l| !l.trim().is_empty()).unwrap();
                proptest::prop_assert_eq!(last.trim_end(), "CLAUDE_DECISIONS_OK: YES");
            }
        }

        #[test]
        fn appending_a_verdict_to_clean_text_decides(body in "[a-z \n]{0,200}", yes in proptest::bool::ANY) {
            let line = if yes { "CLAUDE_DECISIONS_OK: YES" } else { "CLAUDE_DECISIONS_OK: NO" };
            let v = parse_verdict(&format!("{body}\n{line}\n"), K);
            proptest::prop_assert_eq!(v, if yes { Verdict::Yes } else { Verdict::No });
        }
    }
}
