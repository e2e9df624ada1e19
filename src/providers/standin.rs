//! The `standin` provider (SPEC §4): deterministic, offline, instant. It answers from the step's
//! facts, not from the prompt text: a factual audit; decisions that approve the prompt's own
//! "Allowed paths"/"Scope" list (NO with a reason when there is none); a plan; the prompt's own
//! ```diff blocks as the implementation; no fixes; a review that says YES exactly when
//! gatekeeper's mechanical checks passed; a summary. A prompt that carries its own patch
//! therefore runs end to end offline.

use std::fmt::Write as _;

use serde_json::Value;

use super::{Answer, CallRecord, Provider, ProviderError, Request};
use crate::pipeline::decisions::{first_backticked, section_bullets};
use crate::pipeline::patch::extract_diff_blocks;

/// The stand-in.
#[derive(Clone, Copy, Debug, Default)]
pub struct Standin;

fn s<'a>(ctx: &'a Value, key: &str) -> &'a str {
    ctx.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn list(ctx: &Value, key: &str) -> Vec<String> {
    ctx.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The paths a prompt lists under its "Allowed paths" or "Scope" heading.
#[must_use]
pub fn prompt_scope(prompt: &str) -> Vec<String> {
    let mut bullets = section_bullets(prompt, |h| h.contains("allowed") && h.contains("path"));
    if bullets.is_empty() {
        bullets = section_bullets(prompt, |h| h.contains("scope"));
    }
    bullets
        .iter()
        .filter_map(|b| {
            first_backticked(b)
                .map(str::to_owned)
                .or_else(|| b.split_whitespace().next().map(str::to_owned))
        })
        .collect()
}

/// Paths a prompt names: backticked spans that look like paths, and files its diffs touch.
#[must_use]
pub fn named_paths(prompt: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |p: &str| {
        let p = p.trim().trim_start_matches("./").to_owned();
        if !p.is_empty() && !out.contains(&p) {
            out.push(p);
        }
    };
    let mut rest = prompt;
    while let Some(start) = rest.find('`') {
        let after = &rest[start + 1..];
        let Some(len) = after.find('`') else { break };
        let span = &after[..len];
        let looks_like_path = !span.contains(char::is_whitespace)
            && (span.contains('/') || span.contains('.'))
            && !span.contains(['*', '?', '['])
            && !span.starts_with('-');
        if looks_like_path {
            push(span);
        }
        rest = &after[len + 1..];
    }
    for block in extract_diff_blocks(prompt) {
        for line in block.lines() {
            if let Some(p) = line
                .strip_prefix("+++ b/")
                .or_else(|| line.strip_prefix("--- a/"))
            {
                push(p.split('\t').next().unwrap_or(p));
            }
        }
    }
    out
}

impl Standin {
    fn answer(request: &Request<'_>) -> String {
        let ctx = request.context;
        match request.template {
            "audit" => audit(request),
            "decisions" => decisions(ctx),
            "plan" => plan(ctx),
            "implement" => implement(ctx),
            "fix" => fix(ctx),
            "review" => review(ctx),
            "final-verify" => final_verify(ctx),
            "phase-1" => phase_1(ctx),
            "phase-2" => phase_2(ctx),
            "phase-3" => phase_3(ctx),
            "phase-4" => phase_4(ctx),
            "phase-5" => phase_5(ctx),
            other => format!(
                "# {other}\n\nThe stand-in provider has no specific answer for template `{other}`; it records that step {} ran for task `{}`.\n",
                request.step, request.task
            ),
        }
    }
}

fn audit(request: &Request<'_>) -> String {
    let ctx = request.context;
    let files = list(ctx, "repo_files");
    let mut out = String::from("# Audit\n\n## System behaviour\n\n");
    let _ = writeln!(
        out,
        "The repository has {} tracked files. This audit is produced by the offline stand-in: it states facts it can check and infers no behaviour.\n",
        files.len()
    );
    out.push_str("## Findings\n\n");
    let mut tops: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for f in &files {
        let top = f.split_once('/').map_or("(root)", |(t, _)| t).to_owned();
        *tops.entry(top).or_default() += 1;
    }
    for (top, n) in &tops {
        let _ = writeln!(
            out,
            "- `{top}`: {n} tracked file{}",
            if *n == 1 { "" } else { "s" }
        );
    }
    if tops.is_empty() {
        out.push_str("- no tracked files\n");
    }
    out.push_str("\n## Files named by the prompt\n\n");
    let named = named_paths(s(ctx, "prompt"));
    for p in &named {
        let exists = request.root.join(p).exists();
        let _ = writeln!(
            out,
            "- `{p}`: {}",
            if exists { "exists" } else { "does not exist" }
        );
    }
    if named.is_empty() {
        out.push_str("- the prompt names no file\n");
    }
    out
}

fn decisions(ctx: &Value) -> String {
    let prompt = s(ctx, "prompt");
    let allowed = prompt_scope(prompt);
    let forbidden = section_bullets(prompt, |h| h.contains("forbidden"));
    let mut out = String::from("# Decisions\n\n## What should change\n\n");
    out.push_str(
        "What the task prompt asks for, within the paths it lists.\n\n## What must not change\n\n",
    );
    out.push_str("Anything outside the allowed paths.\n\n## Allowed paths\n\n");
    for p in &allowed {
        let _ = writeln!(out, "- `{p}`");
    }
    out.push_str("\n## Forbidden changes\n\n");
    for f in &forbidden {
        let _ = writeln!(out, "- {f}");
    }
    out.push_str("- anything outside the allowed paths\n\nSchema changes required: NO\n\n## Target Flow Summary\n\n");
    if allowed.is_empty() {
        out.push_str("No scope can be approved: the prompt lists no paths under an \"Allowed paths\" or \"Scope\" heading. Add one and re-run step 2.\n\nCLAUDE_DECISIONS_OK: NO\n");
    } else {
        let _ = writeln!(
            out,
            "Implement the prompt's change in {} approved path(s), then test and review.\n",
            allowed.len()
        );
        out.push_str("CLAUDE_DECISIONS_OK: YES\n");
    }
    out
}

fn plan(ctx: &Value) -> String {
    let mut out = String::from("# Plan\n\n## Files to modify\n\n");
    let named: Vec<String> = extract_diff_blocks(s(ctx, "prompt"))
        .iter()
        .flat_map(|b| {
            b.lines()
                .filter_map(|l| l.strip_prefix("+++ b/").map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .collect();
    if named.is_empty() {
        for p in list(ctx, "allowed_paths") {
            let _ = writeln!(out, "- `{p}`");
        }
    } else {
        for p in &named {
            let _ = writeln!(out, "- `{p}`");
        }
    }
    out.push_str("\n## Changes\n\nApply the change the prompt describes, file by file.\n\n## Verification\n\n");
    let checks = list(ctx, "checks");
    if checks.is_empty() {
        out.push_str(
            "- no checks are configured; the scope check and the review verify the change\n",
        );
    }
    for c in checks {
        let _ = writeln!(out, "- `{c}` passes");
    }
    out
}

/// The SPEC §10 ACK and work log: every criterion and approved scope item recited verbatim.
fn ack(ctx: &Value, work: &[String]) -> String {
    let mut out = String::from("## ACK\n\n");
    for c in ctx
        .get("acceptance_criteria")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let _ = writeln!(out, "- {}: {}", s(c, "id"), s(c, "text"));
    }
    for p in list(ctx, "allowed_paths") {
        let _ = writeln!(out, "- scope: `{p}`");
    }
    out.push_str("\n## Work log\n\n");
    for (i, w) in work.iter().enumerate() {
        let _ = writeln!(out, "- W-{}: {w}", i + 1);
    }
    out.push('\n');
    out
}

fn implement(ctx: &Value) -> String {
    let blocks = extract_diff_blocks(s(ctx, "prompt"));
    let work: Vec<String> = if blocks.is_empty() {
        vec!["changed nothing: the prompt carries no ```diff block".to_owned()]
    } else {
        patched_files(s(ctx, "prompt"))
            .iter()
            .map(|(path, _)| format!("applied the prompt's ```diff block to `{path}`"))
            .collect()
    };
    let mut out = ack(ctx, &work);
    out.push_str("# Apply\n\n");
    if blocks.is_empty() {
        out.push_str("The prompt carries no ```diff block; the stand-in changes nothing.\n");
        return out;
    }
    let _ = writeln!(
        out,
        "Applied the {} ```diff block(s) the prompt carries, unchanged.\n",
        blocks.len()
    );
    for b in blocks {
        out.push_str("```diff\n");
        out.push_str(&b);
        out.push_str("```\n\n");
    }
    out
}

fn fix(ctx: &Value) -> String {
    let round = s(ctx, "fix_name");
    format!(
        "# {round}\n\nThe stand-in provider cannot fix failing checks or review issues; it made no change.\n"
    )
}

fn review(ctx: &Value) -> String {
    let ok = ctx
        .get("mechanical_ok")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let reasons = list(ctx, "mechanical_reasons");
    let mut out = String::from("# Post-implementation audit\n\n");
    out.push_str("The stand-in reviewer says YES exactly when gatekeeper's mechanical checks passed.\n\n## Mechanical checks\n\n");
    for r in &reasons {
        let _ = writeln!(out, "- {r}");
    }
    out.push_str("\n## Issues\n\n");
    if ok {
        out.push_str("- none\n\nCLAUDE_FINAL_OK: YES\n");
    } else {
        let criterion = ctx
            .get("acceptance_criteria")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .map_or("AC-1", |c| s(c, "id"));
        for r in reasons.iter().filter(|r| !r.starts_with("ok:")) {
            let _ = writeln!(out, "- {criterion}: {r}");
        }
        out.push_str("\nCLAUDE_FINAL_OK: NO\n");
    }
    out
}

fn final_verify(ctx: &Value) -> String {
    let changed = ctx
        .get("scope_report")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    format!(
        "# Final verification\n\n## Consistency\n\nThe post-implementation audit approved {changed} changed path(s); the checks passed and the scope check held.\n\n## Remaining risks\n\n- none found by the stand-in (it checks facts, not behaviour)\n"
    )
}

const MARKER: &str = crate::pipeline::APPROVAL_MARKER;

/// The files a prompt's ```diff blocks change, with each block.
fn patched_files(prompt: &str) -> Vec<(String, String)> {
    extract_diff_blocks(prompt)
        .into_iter()
        .map(|b| {
            let path = b
                .lines()
                .find_map(|l| {
                    l.strip_prefix("+++ b/")
                        .or_else(|| l.strip_prefix("--- a/"))
                })
                .unwrap_or("(unknown)")
                .split('\t')
                .next()
                .unwrap_or_default()
                .to_owned();
            (path, b)
        })
        .collect()
}

fn phase_1(ctx: &Value) -> String {
    let prompt = s(ctx, "prompt");
    let scope = prompt_scope(prompt);
    let mut out = String::from(
        "# PHASE 1 — Clarifying Questions\n\n| # | Topic | Question | Why it matters | Current Assumption | Risk if Wrong |\n| --- | --- | --- | --- | --- | --- |\n",
    );
    let mut n = 0;
    for p in named_paths(prompt) {
        n += 1;
        let _ = writeln!(
            out,
            "| {n} | Scope | Is `{p}` meant to change, and nothing beside it? | Decides the approved paths | Only the paths the prompt names change | Unreviewed files change |"
        );
    }
    n += 1;
    let _ = writeln!(
        out,
        "| {n} | Verification | Are the configured checks the acceptance test? | Decides what \"passing\" means | The configured checks | A change passes checks that miss the intent |"
    );
    out.push_str("\n## Plan\n\n");
    let _ = writeln!(
        out,
        "- Limit the change to {} listed path(s).",
        scope.len().max(1)
    );
    out.push_str("- Write the per-file change list (phase 2).\n- Apply the change as reviewed diffs (phase 3).\n- Run the checks and the self-audit (phase 4).\n- Deliver the summary with Run / Verify steps (phase 5).\n\n");
    out.push_str(MARKER);
    out.push('\n');
    out
}

fn phase_2(ctx: &Value) -> String {
    let mut out = String::from("# PHASE 2 — Implementation Plan\n\n## Per-file changes\n\n");
    let files = patched_files(s(ctx, "prompt"));
    for (path, _) in &files {
        let _ = writeln!(out, "- `{path}` — apply the change the prompt carries");
    }
    if files.is_empty() {
        out.push_str("- none: the prompt carries no patch\n");
    }
    out.push_str("\n## Dependencies\n\n- none detected (no database, migration, container or CI change named)\n\n");
    out.push_str(MARKER);
    out.push('\n');
    out
}

fn phase_3(ctx: &Value) -> String {
    let mut out = String::from("# PHASE 3 — Code Changes\n\n");
    for (path, block) in patched_files(s(ctx, "prompt")) {
        let _ = write!(
            out,
            "[FILE] {path}\n[WHY] the change the task prompt asks for\n[DIFF]\n```diff\n{block}```\n\n"
        );
    }
    out.push_str("## BUILD COMMANDS\n\n");
    let checks = list(ctx, "checks");
    if checks.is_empty() {
        out.push_str("- none configured\n");
    }
    for c in checks {
        let _ = writeln!(out, "- `{c}`");
    }
    out.push('\n');
    out.push_str(MARKER);
    out.push('\n');
    out
}

fn phase_4(ctx: &Value) -> String {
    let mut out = String::from(
        "# PHASE 4 — Self-Audit & Tests\n\nThe tables below are gatekeeper's computed self-audit; the stand-in adds nothing it cannot check.\n\n",
    );
    out.push_str(s(ctx, "self_audit"));
    out.push('\n');
    out.push_str(MARKER);
    out.push('\n');
    out
}

fn phase_5(ctx: &Value) -> String {
    let files = patched_files(s(ctx, "prompt"));
    let mut out = String::from("# PHASE 5 — Final Delivery Package\n\n## Decisions\n\n");
    for (path, _) in &files {
        let _ = writeln!(out, "- changed `{path}` as the prompt asked");
    }
    out.push_str("\n## Assumptions\n\n- the prompt's patch is the intended change (phase 1)\n\n## Risks\n\n- none found by the stand-in (it checks facts, not behaviour)\n\n## Remaining TODOs\n\n- the KNOWN GAPS of phase 4, if any\n\n## Run / Migrate / Verify\n\n");
    for c in list(ctx, "checks") {
        let _ = writeln!(out, "- `{c}`");
    }
    let _ = writeln!(
        out,
        "- `gatekeeper verify {}`\n- `gatekeeper audit {}`\n",
        s(ctx, "task"),
        s(ctx, "task")
    );
    out.push_str(MARKER);
    out.push('\n');
    out
}

impl Provider for Standin {
    fn complete(&self, request: &Request<'_>) -> Result<Answer, ProviderError> {
        let text = Self::answer(request);
        Ok(Answer {
            record: CallRecord {
                provider: "standin".to_owned(),
                model: None,
                duration_ms: 0,
                tokens_in: 0,
                tokens_out: 0,
                attempts: 1,
                request_id: None,
            },
            text,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_from_prompt() {
        let p = "# Task\n## Scope\n- `src/a.rs`\n- docs/\n## Other\n- `x`\n";
        assert_eq!(prompt_scope(p), vec!["src/a.rs", "docs/"]);
        let p = "## Allowed paths\n- `a`\n## Scope\n- `b`\n";
        assert_eq!(prompt_scope(p), vec!["a"]);
    }

    #[test]
    fn named_paths_from_prompt() {
        let p = "Edit `src/a.rs` and `README.md`, not `a b` or `--flag`.\n```diff\n--- a/x/y.txt\n+++ b/x/y.txt\n```\n";
        assert_eq!(named_paths(p), vec!["src/a.rs", "README.md", "x/y.txt"]);
    }
}
