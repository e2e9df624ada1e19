//! The executor / reviewer protocol (SPEC §10): the ACK and work log of step 4's answer, the
//! issues of step 6's answer, and the records gatekeeper derives from them (`codex/ack.json`,
//! `codex/task_result.json`, `claude/verdict.json`). Pure: no I/O.
//!
//! Bullets are `-`, `*` or `+` followed by whitespace, with surrounding whitespace ignored;
//! nothing looser is accepted.

use serde::Serialize;
use serde_json::{Value, json};

use super::decisions::{heading_text, section_with};

/// One acceptance criterion: its id (`AC-1`, or an explicit `AC-x`) and text.
pub type Criterion = (String, String);

/// What a step 4 answer recites and logs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Ack {
    /// `- AC-n: <text>` lines of the ACK section, as (id, text).
    pub criteria: Vec<Criterion>,
    /// `- scope: \`glob\`` lines of the ACK section.
    pub scope: Vec<String>,
    /// True when the answer has an `## ACK` heading.
    pub present: bool,
    /// True when that heading is the answer's first non-blank line (SPEC §10: the answer
    /// *begins* with its ACK). An ACK elsewhere recites nothing: `criteria` and `scope` stay empty.
    pub at_start: bool,
    /// `- W-n: <text>` lines of the work log.
    pub work_log: Vec<WorkItem>,
}

/// One work-log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkItem {
    /// `W-1`, `W-2`, ….
    pub id: String,
    /// What was done.
    pub text: String,
}

/// One reviewer issue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Issue {
    /// `I-1`, `I-2`, … in order.
    pub id: String,
    /// The criterion it names (`AC-n`), if any.
    pub criterion_ref: Option<String>,
    /// The work-log entry it names (`W-n`), if any.
    pub work_log_ref: Option<String>,
    /// What is wrong.
    pub text: String,
}

/// The bullets of the first section whose heading text equals `name` (ASCII case-insensitive),
/// skipping fenced code, and whether such a heading exists. Sections end at the next heading.
fn section(text: &str, name: &str) -> (bool, Vec<String>) {
    section_with(text, |heading| heading.eq_ignore_ascii_case(name))
}

fn is_id(token: &str, prefix: &str) -> bool {
    token.strip_prefix(prefix).is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    })
}

fn is_work_id(token: &str) -> bool {
    token
        .strip_prefix("W-")
        .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()))
}

/// The report paths a prompt's `## Requires reports` section lists (SPEC §9), one per bullet,
/// with surrounding backticks removed, in order, without repeats.
#[must_use]
pub fn parse_required_reports(prompt: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in section(prompt, "Requires reports").1 {
        let item = item.trim();
        let path = item
            .strip_prefix('`')
            .and_then(|r| r.strip_suffix('`'))
            .unwrap_or(item)
            .trim();
        if !path.is_empty() && !out.iter().any(|p| p == path) {
            out.push(path.to_owned());
        }
    }
    out
}

/// Parses the `## ACK` and `## Work log` sections of a step 4 answer.
#[must_use]
pub fn parse_ack(text: &str) -> Ack {
    let (present, items) = section(text, "ACK");
    let at_start = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| heading_text(l.trim()))
        .is_some_and(|h| h.eq_ignore_ascii_case("ACK"));
    let mut ack = Ack {
        present,
        at_start,
        ..Ack::default()
    };
    for item in items.into_iter().filter(|_| at_start) {
        let Some((head, rest)) = item.split_once(':') else {
            continue;
        };
        let head = head.trim();
        let rest = rest.trim();
        if head == "scope" {
            if let Some(glob) = rest
                .strip_prefix('`')
                .and_then(|r| r.strip_suffix('`'))
                .filter(|g| !g.is_empty() && !g.contains('`'))
            {
                ack.scope.push(glob.to_owned());
            }
        } else if is_id(head, "AC-") {
            ack.criteria.push((head.to_owned(), rest.to_owned()));
        }
    }
    ack.work_log = parse_work_log(text);
    ack
}

/// The `- W-n: <text>` entries of the `## Work log` section.
#[must_use]
pub fn parse_work_log(text: &str) -> Vec<WorkItem> {
    section(text, "Work log")
        .1
        .into_iter()
        .filter_map(|item| {
            let (head, rest) = item.split_once(':')?;
            let head = head.trim();
            is_work_id(head).then(|| WorkItem {
                id: head.to_owned(),
                text: rest.trim().to_owned(),
            })
        })
        .collect()
}

/// How well an ACK echoes the criteria and the approved scope.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EchoReport {
    /// Items echoed exactly.
    pub matched: usize,
    /// Criteria plus scope items.
    pub expected: usize,
    /// `matched / expected` (1.0 when nothing is expected).
    pub echo_match_rate: f64,
    /// The items not echoed exactly (`AC-2`, `scope: \`src/**\``).
    pub missing: Vec<String>,
}

/// Compares an ACK with the criteria and the approved scope.
#[must_use]
pub fn echo_report(criteria: &[Criterion], scope: &[String], ack: &Ack) -> EchoReport {
    let mut missing = Vec::new();
    for (id, text) in criteria {
        if !ack
            .criteria
            .iter()
            .any(|(i, t)| i == id && t == text.trim())
        {
            missing.push(id.clone());
        }
    }
    for glob in scope {
        if !ack.scope.iter().any(|g| g == glob) {
            missing.push(format!("scope: `{glob}`"));
        }
    }
    let expected = criteria.len() + scope.len();
    let matched = expected - missing.len();
    #[allow(clippy::cast_precision_loss)]
    let echo_match_rate = if expected == 0 {
        1.0
    } else {
        matched as f64 / expected as f64
    };
    EchoReport {
        matched,
        expected,
        echo_match_rate,
        missing,
    }
}

/// The `codex/ack.json` record.
#[must_use]
pub fn ack_json(criteria: &[Criterion], scope: &[String], ack: &Ack, report: &EchoReport) -> Value {
    json!({
        "acceptance_criteria": criteria.iter().map(|(id, text)| json!({"id": id, "text": text})).collect::<Vec<_>>(),
        "declared_scope": scope,
        "ack_present": ack.present,
        "ack_at_start": ack.at_start,
        "echoes": {
            "criteria": ack.criteria.iter().map(|(id, text)| json!({"id": id, "text": text})).collect::<Vec<_>>(),
            "scope": ack.scope,
        },
        "matched": report.matched,
        "expected": report.expected,
        "missing": report.missing,
        "echo_match_rate": report.echo_match_rate,
    })
}

/// The issues of a step 6 answer: `Ok` with the issues (empty for `- none`), or `Err` with the
/// issues and the reason when some issue names no criterion (a malformed verdict).
///
/// # Errors
/// When an issue has no `AC-n` reference.
pub fn parse_issues(text: &str) -> Result<Vec<Issue>, (Vec<Issue>, String)> {
    let (_, items) = section(text, "Issues");
    let mut issues = Vec::new();
    for item in items {
        if item.eq_ignore_ascii_case("none") {
            continue;
        }
        let (criterion_ref, work_log_ref, body) = match item.split_once(':') {
            Some((head, rest)) => {
                let tokens: Vec<&str> = head.split_whitespace().collect();
                match tokens.as_slice() {
                    [ac] if is_id(ac, "AC-") => (Some((*ac).to_owned()), None, rest.trim()),
                    [ac, w] if is_id(ac, "AC-") && is_work_id(w) => {
                        (Some((*ac).to_owned()), Some((*w).to_owned()), rest.trim())
                    }
                    [w] if is_work_id(w) => (None, Some((*w).to_owned()), rest.trim()),
                    _ => (None, None, item.as_str()),
                }
            }
            None => (None, None, item.as_str()),
        };
        issues.push(Issue {
            id: format!("I-{}", issues.len() + 1),
            criterion_ref,
            work_log_ref,
            text: body.to_owned(),
        });
    }
    let unreferenced: Vec<&str> = issues
        .iter()
        .filter(|i| i.criterion_ref.is_none())
        .map(|i| i.id.as_str())
        .collect();
    if unreferenced.is_empty() {
        Ok(issues)
    } else {
        let reason = format!(
            "issue(s) {} name no acceptance criterion (`- AC-n: …` or `- AC-n W-m: …`)",
            unreferenced.join(", ")
        );
        Err((issues, reason))
    }
}

/// The issues as sent back to the codex role and hashed on both sides (SPEC §10 fidelity): the
/// canonical JSON of `verdict.json`'s `issues`.
#[must_use]
pub fn issues_bytes(issues: &Value) -> String {
    crate::canonical::to_canonical_string(issues)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str = "## ACK\n- AC-1: `a` says `b`\n* AC-2:   second  \n  + scope: `src/**`\n\n## Work log\n- W-1: did a\n- W-2: did b\n- nothing\n\n# Apply\n";

    #[test]
    fn an_ack_that_is_not_at_the_start_recites_nothing() {
        let late = format!("# Apply\n\n{ANSWER}");
        let ack = parse_ack(&late);
        assert!(ack.present && !ack.at_start);
        assert!(ack.criteria.is_empty() && ack.scope.is_empty());
        assert_eq!(ack.work_log.len(), 2, "the work log may be anywhere");
        let padded = format!("\n  \n{ANSWER}");
        assert!(parse_ack(&padded).at_start);
        assert_eq!(parse_ack(&padded).criteria.len(), 2);
    }

    #[test]
    fn required_reports_are_the_bullets_of_their_section() {
        let prompt = "# Module B\n\n## Requires reports\n- `reports/phase_A_acceptance.json`\n* reports/x.json\n- `reports/x.json`\n-\n\n## Acceptance criteria\n- reports/not-this.json\n\n```\n## Requires reports\n- fenced.json\n```\n";
        assert_eq!(
            parse_required_reports(prompt),
            ["reports/phase_A_acceptance.json", "reports/x.json"]
        );
        assert!(parse_required_reports("no such section\n- a.json\n").is_empty());
    }

    #[test]
    fn parses_ack_and_work_log() {
        let ack = parse_ack(ANSWER);
        assert!(ack.present);
        assert_eq!(
            ack.criteria,
            vec![
                ("AC-1".to_owned(), "`a` says `b`".to_owned()),
                ("AC-2".to_owned(), "second".to_owned())
            ]
        );
        assert_eq!(ack.scope, vec!["src/**"]);
        assert_eq!(ack.work_log.len(), 2);
        assert_eq!(ack.work_log[1].text, "did b");
        let criteria = vec![
            ("AC-1".to_owned(), "`a` says `b`".to_owned()),
            ("AC-2".to_owned(), "second".to_owned()),
            ("AC-3".to_owned(), "third".to_owned()),
        ];
        let r = echo_report(&criteria, &["src/**".to_owned()], &ack);
        assert_eq!((r.matched, r.expected), (3, 4));
        assert!((r.echo_match_rate - 0.75).abs() < 1e-9);
        assert_eq!(r.missing, vec!["AC-3"]);
    }

    #[test]
    fn looser_bullets_are_not_accepted() {
        let ack = parse_ack("## ACK\n-AC-1: x\n1. AC-2: y\nAC-3: z\n- scope: src/**\n");
        assert!(ack.criteria.is_empty());
        assert!(ack.scope.is_empty());
        let r = echo_report(&[], &[], &ack);
        assert!((r.echo_match_rate - 1.0).abs() < 1e-9);
    }

    #[test]
    fn issues() {
        let text = "# R\n## Issues\n- AC-2 W-1: wrong\n* AC-1: missing\n\nCLAUDE_FINAL_OK: NO\n";
        let issues = parse_issues(text).expect("ok");
        assert_eq!(issues.len(), 2);
        assert_eq!(issues[0].criterion_ref.as_deref(), Some("AC-2"));
        assert_eq!(issues[0].work_log_ref.as_deref(), Some("W-1"));
        assert_eq!(issues[1].work_log_ref, None);
        assert_eq!(issues[1].text, "missing");
        assert_eq!(
            parse_issues("## Issues\n- none\n").expect("ok"),
            Vec::<Issue>::new()
        );
        let (bad, reason) =
            parse_issues("## Issues\n- AC-1: ok\n- just wrong\n- W-1: x\n").expect_err("malformed");
        assert_eq!(bad.len(), 3);
        assert!(reason.contains("I-2, I-3"), "{reason}");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "(?s).{0,600}") {
            let ack = parse_ack(&s);
            let _ = echo_report(&[("AC-1".to_owned(), "x".to_owned())], &["a".to_owned()], &ack);
            let _ = parse_issues(&s);
        }

        #[test]
        fn recited_items_match_exactly(
            texts in proptest::collection::vec("[A-Za-z`][A-Za-z0-9 `.,!-]{0,30}[A-Za-z0-9`.!]", 0..5),
            globs in proptest::collection::vec("[a-z][a-z0-9_/.*-]{0,15}", 0..4),
            bullet in "[-*+]",
            pad in "[ \t]{0,3}",
        ) {
            let criteria: Vec<Criterion> = texts.iter().enumerate().map(|(i, t)| (format!("AC-{}", i + 1), t.clone())).collect();
            let mut answer = String::from("## ACK\n");
            for (id, t) in &criteria {
                answer.push_str(&format!("{pad}{bullet} {id}: {t}{pad}\n"));
            }
            for g in &globs {
                answer.push_str(&format!("{pad}{bullet} scope: `{g}`{pad}\n"));
            }
            answer.push_str("\n## Work log\n");
            for i in 0..texts.len() {
                answer.push_str(&format!("{bullet} W-{}: step {i}\n", i + 1));
            }
            let ack = parse_ack(&answer);
            let r = echo_report(&criteria, &globs, &ack);
            proptest::prop_assert!((r.echo_match_rate - 1.0).abs() < 1e-9, "{:?}", r);
            proptest::prop_assert_eq!(ack.work_log.len(), texts.len());
            if !criteria.is_empty() {
                // Dropping one criterion lowers the rate below 1.
                let first = answer.lines().nth(1).unwrap_or_default().to_owned();
                let without = answer.replacen(&format!("{first}\n"), "", 1);
                let r = echo_report(&criteria, &globs, &parse_ack(&without));
                proptest::prop_assert!(r.echo_match_rate < 1.0);
            }
        }

        #[test]
        fn referenced_issues_round_trip(
            refs in proptest::collection::vec((1u32..20, proptest::option::of(1u32..20), "[A-Za-z][A-Za-z0-9 ,.]{0,30}[A-Za-z.]"), 1..6),
            bullet in "[-*+]",
        ) {
            let mut text = String::from("## Issues\n");
            for (ac, w, t) in &refs {
                match w {
                    Some(w) => text.push_str(&format!("  {bullet} AC-{ac} W-{w}: {t}  \n")),
                    None => text.push_str(&format!("{bullet} AC-{ac}: {t}\n")),
                }
            }
            text.push_str("\nCLAUDE_FINAL_OK: NO\n");
            let issues = parse_issues(&text).map_err(|(_, r)| proptest::test_runner::TestCaseError::fail(r))?;
            proptest::prop_assert_eq!(issues.len(), refs.len());
            for (issue, (ac, w, t)) in issues.iter().zip(&refs) {
                proptest::prop_assert_eq!(issue.criterion_ref.clone(), Some(format!("AC-{ac}")));
                proptest::prop_assert_eq!(issue.work_log_ref.clone(), w.map(|w| format!("W-{w}")));
                proptest::prop_assert_eq!(&issue.text, t);
            }
        }
    }
}
