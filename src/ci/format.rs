//! Renderings of the CI gate's report: text, GitHub workflow commands (capped as GitHub displays
//! them: at most 10 errors and 10 warnings per step, the most important first, the rest counted),
//! JSON, and the markdown step summary. Pure.

use std::fmt::Write as _;

use super::{Finding, Report, Severity};
use crate::canonical::to_canonical_pretty;

/// GitHub shows at most this many annotations of one severity per step.
pub const GITHUB_CAP: usize = 10;

/// Plain text.
#[must_use]
pub fn text(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "gatekeeper ci: base `{}` (merge base {}), head {}",
        r.base,
        short(&r.merge_base),
        short(&r.head)
    );
    let _ = writeln!(
        out,
        "{} changed path(s); {} task(s){}",
        r.changed_paths,
        r.tasks.len(),
        tasks_line(r)
    );
    for f in &r.findings {
        let tag = if f.severity == Severity::Error {
            "FAIL"
        } else {
            "warn"
        };
        let _ = writeln!(out, "{tag} {}[{}] {}", location(f), f.title, f.message);
    }
    let errors = r.errors().count();
    if errors == 0 {
        out.push_str("ok: every change is covered by an approved task\n");
    } else {
        let _ = writeln!(out, "{errors} error(s); exit {}", r.exit.code());
    }
    out
}

fn tasks_line(r: &Report) -> String {
    if r.tasks.is_empty() {
        return String::new();
    }
    let list: Vec<String> = r
        .tasks
        .iter()
        .map(|t| format!("{} ({})", t.task, if t.ok { "ok" } else { "failed" }))
        .collect();
    format!(": {}", list.join(", "))
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

fn location(f: &Finding) -> String {
    match (&f.file, f.line) {
        (Some(p), Some(l)) => format!("{p}:{l}: "),
        (Some(p), None) => format!("{p}: "),
        _ => String::new(),
    }
}

/// Escapes a workflow-command message (`%`, CR, LF).
#[must_use]
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a workflow-command property value (also `:` and `,`).
#[must_use]
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

fn command(f: &Finding) -> String {
    let level = if f.severity == Severity::Error {
        "error"
    } else {
        "warning"
    };
    let mut props = Vec::new();
    if let Some(file) = &f.file {
        props.push(format!("file={}", escape_property(file)));
    }
    if let Some(line) = f.line {
        props.push(format!("line={line}"));
    }
    props.push(format!(
        "title={}",
        escape_property(&format!("gatekeeper: {}", f.title))
    ));
    format!("::{level} {}::{}", props.join(","), escape_data(&f.message))
}

/// GitHub workflow commands, capped per severity; the last slot counts what was left out.
#[must_use]
pub fn github(r: &Report) -> String {
    let mut out = String::new();
    for severity in [Severity::Error, Severity::Warning] {
        let all: Vec<&Finding> = r
            .findings
            .iter()
            .filter(|f| f.severity == severity)
            .collect();
        let shown = if all.len() > GITHUB_CAP {
            GITHUB_CAP - 1
        } else {
            all.len()
        };
        for f in &all[..shown] {
            out.push_str(&command(f));
            out.push('\n');
        }
        if all.len() > shown {
            let level = if severity == Severity::Error {
                "error"
            } else {
                "warning"
            };
            let _ = writeln!(
                out,
                "::{level} title=gatekeeper::{} more finding(s) not shown here; the full list is in the job summary",
                all.len() - shown
            );
        }
    }
    out.push_str(
        &text(r)
            .lines()
            .last()
            .map(|l| format!("{l}\n"))
            .unwrap_or_default(),
    );
    out
}

/// JSON.
#[must_use]
pub fn json(r: &Report) -> String {
    to_canonical_pretty(r)
}

/// The markdown job summary: every finding.
#[must_use]
pub fn markdown(r: &Report) -> String {
    let mut out = String::from("## gatekeeper ci\n\n");
    let _ = writeln!(
        out,
        "Base `{}` (merge base `{}`), head `{}`: {} changed path(s).\n",
        r.base,
        short(&r.merge_base),
        short(&r.head),
        r.changed_paths
    );
    if !r.tasks.is_empty() {
        out.push_str("| task | approved paths | result |\n|---|---|---|\n");
        for t in &r.tasks {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} |",
                t.task,
                t.approved_paths,
                if t.ok { "ok" } else { "failed" }
            );
        }
        out.push('\n');
    }
    if r.findings.is_empty() {
        out.push_str("No findings: every change is covered by an approved task.\n");
        return out;
    }
    out.push_str("| severity | where | what | message |\n|---|---|---|---|\n");
    for f in &r.findings {
        let sev = if f.severity == Severity::Error {
            "error"
        } else {
            "warning"
        };
        let _ = writeln!(
            out,
            "| {sev} | `{}` | {} | {} |",
            location(f).trim_end_matches(": "),
            f.title,
            f.message.replace('|', "\\|")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::ExitKind;

    fn finding(i: usize, severity: Severity) -> Finding {
        Finding {
            severity,
            exit: ExitKind::ScopeViolation,
            title: "out of scope".into(),
            message: format!("path {i}, with: odd % chars\nand a newline"),
            file: Some(format!("src/a,{i}.rs")),
            line: Some(i + 1),
            task: None,
        }
    }

    fn report(errors: usize, warnings: usize) -> Report {
        let mut findings: Vec<Finding> = (0..errors).map(|i| finding(i, Severity::Error)).collect();
        findings.extend((0..warnings).map(|i| finding(i, Severity::Warning)));
        Report {
            base: "origin/main".into(),
            merge_base: "a".repeat(40),
            head: "b".repeat(40),
            changed_paths: errors,
            tasks: Vec::new(),
            findings,
            exit: if errors > 0 {
                ExitKind::ScopeViolation
            } else {
                ExitKind::Done
            },
        }
    }

    #[test]
    fn github_annotations_are_capped_and_escaped() {
        let out = github(&report(25, 3));
        let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("::error")).collect();
        assert_eq!(errors.len(), GITHUB_CAP);
        assert!(errors[9].contains("16 more finding(s)"), "{}", errors[9]);
        assert_eq!(
            out.lines().filter(|l| l.starts_with("::warning")).count(),
            3
        );
        assert!(errors[0].starts_with("::error file=src/a%2C0.rs,line=1,title=gatekeeper%3A out of scope::path 0, with: odd %25 chars%0Aand a newline"), "{}", errors[0]);
    }

    #[test]
    fn exactly_ten_are_all_shown() {
        let out = github(&report(10, 0));
        assert_eq!(out.lines().filter(|l| l.starts_with("::error")).count(), 10);
        assert!(!out.contains("more finding"));
    }

    #[test]
    fn markdown_lists_everything() {
        let md = markdown(&report(25, 0));
        assert_eq!(md.lines().filter(|l| l.starts_with("| error")).count(), 25);
    }
}
