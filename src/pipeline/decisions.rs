//! The decisions format (SPEC §3): allowed paths, forbidden globs and rules, schema changes, and
//! the verdict. Pure: no I/O.

use serde::Serialize;

use super::verdict::{Verdict, parse_verdict};

/// What gatekeeper reads from `claude/decisions.md`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Decisions {
    /// Allowed path globs, as written.
    pub allowed: Vec<String>,
    /// Forbidden path globs (bullets with a backticked span).
    pub forbidden: Vec<String>,
    /// Free-text forbidden rules, shown to reviewers.
    pub rules: Vec<String>,
    /// `Schema changes required: YES|NO`, if stated.
    pub schema_changes: Option<bool>,
}

/// Parsed decisions plus the verdict, with a YES and no allowed path downgraded to malformed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecisionsDoc {
    /// The lists.
    pub decisions: Decisions,
    /// The verdict after the SPEC §3 rule "YES with no allowed path is malformed".
    pub verdict: Verdict,
}

/// Parses a decisions document.
#[must_use]
pub fn parse_decisions_doc(text: &str) -> DecisionsDoc {
    let decisions = parse_decisions(text);
    let mut verdict = parse_verdict(text, "CLAUDE_DECISIONS_OK");
    if verdict == Verdict::Yes && decisions.allowed.is_empty() {
        verdict = Verdict::Malformed(
            "the verdict is YES but no allowed path is listed under an \"Allowed paths\" heading"
                .to_owned(),
        );
    }
    DecisionsDoc { decisions, verdict }
}

/// Parses the lists of a decisions document (any markdown with the SPEC §3 headings).
#[must_use]
pub fn parse_decisions(text: &str) -> Decisions {
    let allowed = section_bullets(text, |h| h.contains("allowed") && h.contains("path"))
        .into_iter()
        .filter_map(|b| bullet_path(&b))
        .collect();
    let mut forbidden = Vec::new();
    let mut rules = Vec::new();
    for bullet in section_bullets(text, |h| h.contains("forbidden")) {
        match first_backticked(&bullet) {
            Some(glob) => forbidden.push(glob.to_owned()),
            None => rules.push(bullet),
        }
    }
    let schema_changes = text.lines().find_map(schema_line);
    Decisions {
        allowed,
        forbidden,
        rules,
        schema_changes,
    }
}

/// The bullets under the first heading whose lowercased text satisfies `pick`, up to the next
/// heading. Bullets are `-`, `*` or `+` followed by whitespace.
#[must_use]
pub fn section_bullets(text: &str, pick: impl Fn(&str) -> bool) -> Vec<String> {
    section_with(text, |heading| pick(&heading.to_lowercase())).1
}

/// Whether a heading whose text satisfies `pick` exists, and the bullets under the first such
/// heading, up to the next heading, skipping fenced code.
#[must_use]
pub fn section_with(text: &str, pick: impl Fn(&str) -> bool) -> (bool, Vec<String>) {
    let mut inside = false;
    let mut found = false;
    let mut out = Vec::new();
    let mut in_fence = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        if let Some(heading) = heading_text(trimmed) {
            if inside {
                break;
            }
            inside = pick(heading);
            found |= inside;
            continue;
        }
        if inside && let Some(item) = bullet_text(trimmed) {
            out.push(item.to_owned());
        }
    }
    (found, out)
}

/// The text of a markdown ATX heading (`#`…`######` then a space), or `None`.
#[must_use]
pub fn heading_text(line: &str) -> Option<&str> {
    let hashes = line.bytes().take_while(|b| *b == b'#').count();
    if hashes == 0 || hashes > 6 {
        return None;
    }
    let rest = &line[hashes..];
    if rest.is_empty() {
        return Some("");
    }
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    Some(rest.trim().trim_end_matches('#').trim())
}

/// The text of a bullet line (`-`, `*` or `+` and whitespace), trimmed; `None` otherwise.
#[must_use]
pub fn bullet_text(line: &str) -> Option<&str> {
    let line = line.trim();
    let rest = line.strip_prefix(['-', '*', '+'])?;
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    let item = rest.trim();
    (!item.is_empty()).then_some(item)
}

/// The first `backticked` span of a line.
#[must_use]
pub fn first_backticked(text: &str) -> Option<&str> {
    let start = text.find('`')? + 1;
    let len = text[start..].find('`')?;
    let span = text[start..start + len].trim();
    (!span.is_empty()).then_some(span)
}

fn bullet_path(bullet: &str) -> Option<String> {
    if let Some(span) = first_backticked(bullet) {
        return Some(span.to_owned());
    }
    bullet
        .split_whitespace()
        .next()
        .map(|w| w.trim_end_matches([',', ';', ':']).to_owned())
}

fn schema_line(line: &str) -> Option<bool> {
    let cleaned: String = line
        .trim()
        .trim_start_matches(['-', '*', '+', ' '])
        .replace("**", "");
    let lower = cleaned.to_lowercase();
    let rest = lower.strip_prefix("schema changes required:")?.trim();
    match rest {
        "yes" => Some(true),
        "no" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# Decisions\n\n## Allowed paths\n- `src/**` — the code\n- docs/guide.md because\n* `tests/`\n\n## Forbidden changes\n- `Cargo.lock`\n- no new dependencies\n\nSchema changes required: NO\n\n## Target Flow Summary\n- `not/a/path`\n\nCLAUDE_DECISIONS_OK: YES\n";

    #[test]
    fn sample_document() {
        let doc = parse_decisions_doc(SAMPLE);
        assert_eq!(doc.verdict, Verdict::Yes);
        assert_eq!(
            doc.decisions.allowed,
            vec!["src/**", "docs/guide.md", "tests/"]
        );
        assert_eq!(doc.decisions.forbidden, vec!["Cargo.lock"]);
        assert_eq!(doc.decisions.rules, vec!["no new dependencies"]);
        assert_eq!(doc.decisions.schema_changes, Some(false));
    }

    #[test]
    fn yes_without_allowed_paths_is_malformed() {
        let doc = parse_decisions_doc("# D\nnothing\nCLAUDE_DECISIONS_OK: YES\n");
        assert!(matches!(doc.verdict, Verdict::Malformed(_)));
        let doc = parse_decisions_doc("## allowed PATHS\n\nCLAUDE_DECISIONS_OK: NO\n");
        assert_eq!(doc.verdict, Verdict::No);
    }

    #[test]
    fn only_first_matching_heading_counts() {
        let text = "## Allowed paths\n- `a`\n## Allowed paths again\n- `b`\n";
        assert_eq!(parse_decisions(text).allowed, vec!["a"]);
    }

    #[test]
    fn fenced_code_is_not_a_heading() {
        let text = "## Allowed paths\n```\n# not a heading\n- `x`\n```\n- `y`\n";
        assert_eq!(parse_decisions(text).allowed, vec!["y"]);
    }

    #[test]
    fn bullets_need_a_space() {
        assert_eq!(bullet_text("-x"), None);
        assert_eq!(bullet_text("+  `a` b"), Some("`a` b"));
        assert_eq!(heading_text("#nope"), None);
        assert_eq!(heading_text("### Allowed ###"), Some("Allowed"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "(?s).{0,600}") {
            let _ = parse_decisions_doc(&s);
        }

        #[test]
        fn listed_paths_round_trip(paths in proptest::collection::vec("[a-z][a-z0-9_/.*-]{0,20}", 1..8)) {
            let mut text = String::from("## Allowed paths\n");
            for p in &paths {
                text.push_str(&format!("- `{p}`\n"));
            }
            text.push_str("CLAUDE_DECISIONS_OK: YES\n");
            let doc = parse_decisions_doc(&text);
            proptest::prop_assert_eq!(doc.decisions.allowed, paths);
            proptest::prop_assert_eq!(doc.verdict, Verdict::Yes);
        }
    }
}
