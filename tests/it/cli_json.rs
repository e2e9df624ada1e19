//! `status --json` (SPEC §5: a stable documented schema).

use serde_json::Value;

use crate::support::{PATCH_CONFIG, Ws};

fn keys(v: &Value) -> Vec<String> {
    v.as_object().expect("object").keys().cloned().collect()
}

#[test]
fn status_json_of_a_new_task_has_the_documented_fields() {
    let ws = Ws::with_patch_task();
    ws.steps_to("t", 2);
    let st = ws.status_json("t");
    for key in [
        "task",
        "pipeline",
        "correlation_id",
        "base_commit",
        "steps",
        "contracts",
        "next",
    ] {
        assert!(keys(&st).contains(&key.to_owned()), "no `{key}` in {st}");
    }
    assert_eq!(st["task"], "t");
    assert_eq!(st["pipeline"], "ai-stack-trace");
    assert!(
        uuid_like(st["correlation_id"].as_str().expect("id")),
        "{st}"
    );
    assert_eq!(st["base_commit"], ws.head());
    assert_eq!(st["contracts"], serde_json::json!(["CLAUDE_DECISIONS_OK"]));
    assert_eq!(st["next"], "gatekeeper step 3 t");

    let steps = st["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 9);
    let names: Vec<(u64, &str, &str)> = steps
        .iter()
        .map(|s| {
            (
                s["step"].as_u64().expect("step"),
                s["name"].as_str().expect("name"),
                s["role"].as_str().expect("role"),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            (0, "ingest", "system"),
            (1, "audit", "gemini"),
            (2, "decisions", "claude"),
            (3, "plan", "codex"),
            (4, "implement", "codex"),
            (5, "test", "codex"),
            (6, "post-implement-audit", "claude"),
            (7, "final-verify", "gemini"),
            (8, "commit", "system"),
        ]
    );
    for s in steps {
        for key in [
            "step",
            "name",
            "role",
            "state",
            "finished_at",
            "tokens_in",
            "tokens_out",
        ] {
            assert!(keys(s).contains(&key.to_owned()), "no `{key}` in {s}");
        }
        let allowed = [
            "step",
            "name",
            "role",
            "state",
            "reason",
            "finished_at",
            "tokens_in",
            "tokens_out",
        ];
        for k in keys(s) {
            assert!(allowed.contains(&k.as_str()), "unexpected `{k}` in {s}");
        }
        assert!(s["tokens_in"].is_u64() && s["tokens_out"].is_u64(), "{s}");
    }
    assert_eq!(steps[0]["state"], "done");
    assert!(
        steps[0]["finished_at"]
            .as_str()
            .is_some_and(|t| t.parse::<jiff::Timestamp>().is_ok()),
        "{}",
        steps[0]
    );
    assert_eq!(steps[3]["state"], "pending");
    assert!(steps[3]["finished_at"].is_null());
    assert!(steps[3].get("reason").is_none(), "{}", steps[3]);
}

#[test]
fn status_json_carries_the_reason_of_a_refused_step() {
    let ws = Ws::with_task(PATCH_CONFIG, "# No scope here\n\nJust do it.\n");
    ws.steps_to("t", 1);
    ws.gk(&["step", "2", "t"]).expect(4);
    let st = ws.status_json("t");
    let step2 = &st["steps"][2];
    assert_eq!(step2["state"], "no");
    assert!(
        step2["reason"].as_str().is_some_and(|r| r.contains("NO")),
        "{step2}"
    );
    assert_eq!(st["contracts"], serde_json::json!([]));
}

#[test]
fn status_json_of_a_finished_task_names_its_commit_and_no_next_step() {
    let ws = Ws::with_patch_task();
    ws.gk(&["run", "t"]).expect(0);
    let st = ws.status_json("t");
    assert!(st["next"].is_null(), "{st}");
    assert_eq!(
        st["contracts"],
        serde_json::json!(["CLAUDE_DECISIONS_OK", "CLAUDE_FINAL_OK"])
    );
    let commit = st["commit"].as_str().expect("commit");
    assert!(
        ws.log().len() >= 3 && commit.len() == 40,
        "{st} {:?}",
        ws.log()
    );
}

/// The same state has one name in the table and in `--json` (bug: the table says
/// `scope-violation`/`checks-failing`, the JSON `scope_violation`/`checks_failing`).
#[test]
fn status_json_state_names_match_the_status_table() {
    let ws = Ws::with_task(
        "version: 1\nfix_attempts: 0\nchecks:\n  - { name: never, run: \"false\" }\n",
        crate::support::PATCH_PROMPT,
    );
    ws.steps_to("t", 4);
    ws.gk(&["step", "5", "t"]).expect(6);
    let table = ws.gk(&["status", "t"]).expect(0).stdout;
    let st = ws.status_json("t");
    for s in st["steps"].as_array().expect("steps") {
        let id = s["step"].as_u64().expect("step");
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("{id} ")))
            .unwrap_or_else(|| panic!("no row for step {id}:\n{table}"));
        let state = row.split_whitespace().nth(3).expect("state column");
        assert_eq!(s["state"], state, "step {id}: table row `{row}`");
    }
}

fn uuid_like(s: &str) -> bool {
    let parts: Vec<usize> = s.split('-').map(str::len).collect();
    parts == [8, 4, 4, 4, 12] && s.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
}
