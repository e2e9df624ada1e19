//! SPEC §10 (executor / reviewer protocol) and §8.1 (SSOT mirror, human approval) end to end,
//! with scripted `command` agents.

use crate::support::{PATCH_ACK, PATCH_CONFIG, PATCH_PROMPT, Ws, heredoc};

const DECISIONS: &str = "# Decisions\n\n## Allowed paths\n\n- `src/greeting.txt`\n\n## Forbidden changes\n\n- anything else\n\nCLAUDE_DECISIONS_OK: YES\n";

/// A workspace whose codex agent implements with `implement` (a full shell arm) and records the
/// prompt of every fix round in `scratch/fix-stdin.txt`, and whose claude agent reviews with
/// `review` (a full shell arm).
fn scripted(implement: &str, review: &str) -> Ws {
    let ws = Ws::new();
    let stdin_log = ws.scratch("fix-stdin.txt");
    let codex = ws.agent(
        "codex.sh",
        &[
            ("implement", implement.to_owned()),
            (
                "fix",
                format!(
                    "cat > '{}'\n{}",
                    stdin_log.display(),
                    heredoc("# Fix\n\nAddressed every issue.\n")
                ),
            ),
        ],
    );
    let claude = ws.agent(
        "claude.sh",
        &[
            ("decisions", heredoc(DECISIONS)),
            ("review", review.to_owned()),
        ],
    );
    ws.config(&format!(
        "{PATCH_CONFIG}review_rounds: 2\nroles:\n  codex: {{ provider: command, argv: [\"sh\", \"{codex}\"] }}\n  claude: {{ provider: command, argv: [\"sh\", \"{claude}\"] }}\n"
    ));
    ws.commit("config");
    ws.prompt("t", PATCH_PROMPT);
    ws
}

fn good_implement() -> String {
    format!(
        "printf 'Hello, gatekeeper!\\n' > src/greeting.txt\n{}",
        heredoc(&format!("{PATCH_ACK}# Apply\n\nEdited the greeting.\n"))
    )
}

fn json(ws: &Ws, rel: &str) -> serde_json::Value {
    serde_json::from_str(&ws.read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn a_no_with_two_issues_reaches_the_fix_round_byte_for_byte_then_yes() {
    let ws = {
        // The reviewer says NO with two issues the first time, YES after.
        let marker = "reviewed-once";
        let review = format!(
            "if [ -f \"$HOME/{marker}\" ]; then\n{}else\ntouch \"$HOME/{marker}\"\n{}fi",
            heredoc("# Post-implementation audit\n\n## Issues\n\n- none\n\nCLAUDE_FINAL_OK: YES\n"),
            heredoc(
                "# Post-implementation audit\n\n## Issues\n\n- AC-1 W-1: the greeting lacks a trailing newline check\n* AC-1: no test covers `src/greeting.txt`\n\nCLAUDE_FINAL_OK: NO\n"
            )
        );
        scripted(&good_implement(), &review)
    };
    let run = ws.gk(&["run", "t"]).expect(0);
    assert!(run.stdout.contains("commit"), "{}", run.stdout);

    // step 4 records: every criterion and scope item echoed.
    let ack = json(&ws, ".ai-stack-trace/t/codex/ack.json");
    assert_eq!(ack["echo_match_rate"], 1.0);
    let result = json(&ws, ".ai-stack-trace/t/codex/task_result.json");
    assert_eq!(result["work_log"][0]["id"], "W-1");
    assert!(
        result["diff_snapshot"]["change_set"].is_object()
            || result["diff_snapshot"]["change_set"].is_array()
    );

    // The fix round got the first verdict's issues byte-for-byte; the journal hashes match.
    let journal = ws.journal("t");
    let review_hashes: Vec<&str> = journal
        .iter()
        .filter(|e| e["event"] == "review_issues")
        .filter_map(|e| {
            e["data"]["issues_sha256"]
                .as_str()
                .or(e["issues_sha256"].as_str())
        })
        .collect();
    let fix_hashes: Vec<&str> = journal
        .iter()
        .filter(|e| e["event"] == "fix_requested")
        .filter_map(|e| {
            e["data"]["issues_sha256"]
                .as_str()
                .or(e["issues_sha256"].as_str())
        })
        .collect();
    assert_eq!(review_hashes.len(), 2, "{journal:?}");
    assert_eq!(fix_hashes, vec![review_hashes[0]]);
    let sent = std::fs::read_to_string(ws.scratch("fix-stdin.txt")).expect("fix stdin");
    let first_issues = serde_json::json!([
        {"criterion_ref": "AC-1", "id": "I-1", "text": "the greeting lacks a trailing newline check", "work_log_ref": "W-1"},
        {"criterion_ref": "AC-1", "id": "I-2", "text": "no test covers `src/greeting.txt`", "work_log_ref": null}
    ]);
    let bytes = serde_json::to_string(&first_issues).expect("json");
    assert!(sent.contains(&bytes), "{bytes}\nnot in\n{sent}");
    let hash = sha256(bytes.as_bytes());
    assert_eq!(review_hashes[0], hash);

    // The last verdict approves with no issues.
    let verdict = json(&ws, ".ai-stack-trace/t/claude/verdict.json");
    assert_eq!(verdict["decision"], "approve");
    assert_eq!(verdict["issues"], serde_json::json!([]));
    ws.gk(&["verify", "t"]).expect(0);

    // The SSOT mirror followed every step.
    let ssot = json(&ws, "ssot/t.json");
    assert_eq!(ssot["source"], "cli");
    assert_eq!(ssot["pipeline"]["step"], 8);
    assert_eq!(ssot["pipeline"]["state"], "done");
    assert_eq!(ssot["acceptance_criteria"][0]["id"], "AC-1");
    assert_eq!(
        ssot["declared_scope"],
        serde_json::json!(["src/greeting.txt"])
    );
    assert_eq!(ssot["ack"]["echo_match_rate"], 1.0);
    assert!(ssot["task_result"].is_object());
    assert_eq!(ssot["verdict"]["decision"], "approve");
    let cid = journal[0]["correlation_id"].as_str().expect("cid");
    assert_eq!(ssot["correlation_id"], cid);
    assert!(ssot["version"].as_u64().expect("version") >= 9);
    assert!(ws.git_status().is_empty(), "{:?}", ws.git_status());
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn an_ack_missing_a_criterion_is_exit_4() {
    let implement = format!(
        "printf 'Hello, gatekeeper!\\n' > src/greeting.txt\n{}",
        heredoc(
            "## ACK\n\n- scope: `src/greeting.txt`\n\n## Work log\n\n- W-1: edited\n\n# Apply\n"
        )
    );
    let ws = scripted(
        &implement,
        &heredoc("## Issues\n- none\n\nCLAUDE_FINAL_OK: YES\n"),
    );
    ws.steps_to("t", 3);
    let run = ws.gk(&["step", "4", "t"]).expect(4);
    assert!(
        run.stdout.contains("AC-1") || run.stderr.contains("AC-1"),
        "{run:?}"
    );
    let ack = json(&ws, ".ai-stack-trace/t/codex/ack.json");
    assert_eq!(ack["echo_match_rate"], 0.5);
    assert_eq!(ack["missing"], serde_json::json!(["AC-1"]));
    assert!(ws.events("t").contains(&"ack_checked".to_owned()));
    assert_eq!(ws.state("t", 4), "no");
    let ssot = json(&ws, "ssot/t.json");
    assert_eq!(ssot["pipeline"]["step"], 4);
    assert_eq!(ssot["pipeline"]["state"], "no");
}

#[test]
fn an_ack_paraphrasing_a_criterion_is_exit_4() {
    let implement = format!(
        "printf 'Hello, gatekeeper!\\n' > src/greeting.txt\n{}",
        heredoc(
            "## ACK\n\n- AC-1: the greeting says Hello, gatekeeper!\n- scope: `src/greeting.txt`\n\n## Work log\n\n- W-1: edited\n"
        )
    );
    let ws = scripted(
        &implement,
        &heredoc("## Issues\n- none\n\nCLAUDE_FINAL_OK: YES\n"),
    );
    ws.steps_to("t", 3);
    ws.gk(&["step", "4", "t"]).expect(4);
}

#[test]
fn an_ack_that_does_not_open_the_answer_is_exit_4() {
    let implement = format!(
        "printf 'Hello, gatekeeper!\\n' > src/greeting.txt\n{}",
        heredoc(&format!("I edited the greeting.\n\n{PATCH_ACK}"))
    );
    let ws = scripted(
        &implement,
        &heredoc("## Issues\n- none\n\nCLAUDE_FINAL_OK: YES\n"),
    );
    ws.steps_to("t", 3);
    let run = ws.gk(&["step", "4", "t"]).expect(4);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        all.contains("must begin with its `## ACK` section"),
        "{all}"
    );
    let ack = json(&ws, ".ai-stack-trace/t/codex/ack.json");
    assert_eq!(
        (
            ack["ack_present"].clone(),
            ack["ack_at_start"].clone(),
            ack["echo_match_rate"].clone()
        ),
        (
            serde_json::json!(true),
            serde_json::json!(false),
            serde_json::json!(0.0)
        )
    );
}

#[test]
fn an_issue_without_a_criterion_makes_the_verdict_malformed() {
    let ws = scripted(
        &good_implement(),
        &heredoc(
            "# Post-implementation audit\n\n## Issues\n\n- AC-1: fine\n- something is off\n\nCLAUDE_FINAL_OK: YES\n",
        ),
    );
    ws.steps_to("t", 5);
    let run = ws.gk(&["step", "6", "t"]).expect(4);
    assert!(
        run.stdout.contains("malformed") || run.stderr.contains("malformed"),
        "{run:?}"
    );
    let verdict = json(&ws, ".ai-stack-trace/t/claude/verdict.json");
    assert_eq!(verdict["decision"], "reject");
    assert_eq!(
        verdict["issues"][1]["criterion_ref"],
        serde_json::Value::Null
    );
    assert!(!ws.exists(".ai-stack-trace/t/contract/CLAUDE_FINAL_OK"));
}

#[test]
fn step_8_waits_for_a_human_approval() {
    let ws = Ws::with_task(
        &format!("{PATCH_CONFIG}require_human_approval: true\n"),
        PATCH_PROMPT,
    );
    ws.steps_to("t", 7);
    let run = ws.gk(&["step", "8", "t"]).expect(3);
    assert!(
        run.stderr.contains("gatekeeper approve t"),
        "{}",
        run.stderr
    );
    let before = json(&ws, "ssot/t.json");
    ws.gk(&["approve", "t", "--by", "alice"]).expect(0);
    let after = json(&ws, "ssot/t.json");
    assert_eq!(after["decision"]["verdict"], "approved");
    assert_eq!(after["decision"]["by"], "alice");
    assert_eq!(
        after["version"].as_u64().expect("v"),
        before["version"].as_u64().expect("v") + 1
    );
    let history = after["history"].as_array().expect("history");
    assert_eq!(history.last().expect("entry")["event"], "approved");
    ws.gk(&["step", "8", "t"]).expect(0);
    ws.gk(&["verify", "t"]).expect(0);
    assert!(ws.git_status().is_empty(), "{:?}", ws.git_status());
}

#[test]
fn a_rejection_keeps_step_8_closed() {
    let ws = Ws::with_task(
        &format!("{PATCH_CONFIG}require_human_approval: true\n"),
        PATCH_PROMPT,
    );
    ws.steps_to("t", 7);
    ws.gk(&["reject", "t", "--by", "bob", "--reason", "not now"])
        .expect(0);
    let ssot = json(&ws, "ssot/t.json");
    assert_eq!(ssot["decision"]["verdict"], "rejected");
    assert_eq!(ssot["decision"]["reason"], "not now");
    let run = ws.gk(&["step", "8", "t"]).expect(3);
    assert!(run.stderr.contains("`rejected`"), "{}", run.stderr);
}
