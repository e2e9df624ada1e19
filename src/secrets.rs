//! Secret redaction (SPEC §2 "Secrets"): provider output and check logs are scanned before they
//! are written, by value (known token shapes and the values of the configured key variables) and
//! by name (`*_KEY=`, `*_TOKEN=`, `*_SECRET=` assignments). Pure.

use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

/// One kind of redaction and how often it happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Redaction {
    /// The pattern's name (`anthropic-key`, `env:OPENAI_API_KEY`, …).
    pub kind: String,
    /// How many times.
    pub count: usize,
}

static PATTERNS: LazyLock<Vec<(&'static str, Regex)>> = LazyLock::new(|| {
    let p = |name, re: &str| {
        (
            name,
            Regex::new(re).expect("the built-in secret patterns compile"),
        )
    };
    vec![
        p(
            "pem-private-key",
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
        ),
        p("anthropic-key", r"sk-ant-[A-Za-z0-9_\-]{16,}"),
        p("openai-key", r"sk-[A-Za-z0-9_\-]{20,}"),
        p(
            "github-token",
            r"(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}",
        ),
        p("aws-access-key", r"AKIA[0-9A-Z]{16}"),
        p("google-api-key", r"AIza[0-9A-Za-z_\-]{35}"),
        p(
            "jwt",
            r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
        ),
    ]
});

static ASSIGNMENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"\b([A-Z0-9_]*(?:_KEY|_TOKEN|_SECRET))(\s*[=:]\s*)("[^"\n]*"|'[^'\n]*'|[^\s"']+)"#)
        .expect("the assignment pattern compiles")
});

/// Finds known secret shapes (not configured values or assignments): `(line, kind)` pairs, for
/// the self-audit's secret scan of the tree.
#[must_use]
pub fn scan(text: &str) -> Vec<(usize, &'static str)> {
    let mut out = Vec::new();
    for (name, re) in PATTERNS.iter() {
        for m in re.find_iter(text) {
            out.push((text[..m.start()].matches('\n').count() + 1, *name));
        }
    }
    out.sort_unstable();
    out
}

/// Redacts `text`. `known` are (name, value) pairs of secrets whose values must never appear.
#[must_use]
pub fn redact(text: &str, known: &[(&str, &str)]) -> (String, Vec<Redaction>) {
    let mut out = text.to_owned();
    let mut found = Vec::new();
    for (name, value) in known {
        if value.len() >= 8 && out.contains(value) {
            let count = out.matches(value).count();
            out = out.replace(value, &format!("[REDACTED:{name}]"));
            found.push(Redaction {
                kind: format!("env:{name}"),
                count,
            });
        }
    }
    for (name, re) in PATTERNS.iter() {
        let count = re.find_iter(&out).count();
        if count > 0 {
            out = re
                .replace_all(&out, format!("[REDACTED:{name}]").as_str())
                .into_owned();
            found.push(Redaction {
                kind: (*name).to_owned(),
                count,
            });
        }
    }
    let mut count = 0;
    out = ASSIGNMENT
        .replace_all(&out, |c: &regex::Captures<'_>| {
            let value = &c[3];
            if value.starts_with("[REDACTED") || value.trim_matches(['"', '\'']).is_empty() {
                c[0].to_owned()
            } else {
                count += 1;
                format!("{}{}[REDACTED:assignment]", &c[1], &c[2])
            }
        })
        .into_owned();
    if count > 0 {
        found.push(Redaction {
            kind: "assignment".to_owned(),
            count,
        });
    }
    (out, found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &str) {
        let (out, _) = redact(input, &[("OPENAI_API_KEY", "live-secret-value-123")]);
        assert_eq!(out, expected);
    }

    #[test]
    fn shapes_and_names() {
        check(
            "key sk-ant-api03-abcdefghijklmnopqrstuv end",
            "key [REDACTED:anthropic-key] end",
        );
        check(
            "sk-proj-abcdefghijklmnopqrstuvwxyz",
            "[REDACTED:openai-key]",
        );
        check(
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "[REDACTED:github-token]",
        );
        check("AKIAABCDEFGHIJKLMNOP", "[REDACTED:aws-access-key]");
        check(
            "AIzaSyA1234567890abcdefghijklmnopqrstuv",
            "[REDACTED:google-api-key]",
        );
        check(
            "the value live-secret-value-123 leaked",
            "the value [REDACTED:OPENAI_API_KEY] leaked",
        );
        check(
            "export MY_API_KEY=abc123",
            "export MY_API_KEY=[REDACTED:assignment]",
        );
        check("DB_SECRET: \"hunter2\"", "DB_SECRET: [REDACTED:assignment]");
        check(
            "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----",
            "[REDACTED:pem-private-key]",
        );
        check("nothing to see, sk- short", "nothing to see, sk- short");
        check(
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            "[REDACTED:jwt]",
        );
    }

    #[test]
    fn counts_are_reported() {
        let (_, found) = redact("A_TOKEN=x B_TOKEN=y", &[]);
        assert_eq!(
            found,
            vec![Redaction {
                kind: "assignment".into(),
                count: 2
            }]
        );
    }
}
