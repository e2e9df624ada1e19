//! The stand-in pipeline end to end through the binary.

use crate::support::Ws;

#[test]
fn patch_task_runs_all_nine_steps_and_verifies() {
    let ws = Ws::with_patch_task();
    let run = ws.gk(&["run", "t"]).expect(0);
    assert!(run.stdout.contains("step 8 `commit`"), "{}", run.stdout);
    assert_eq!(ws.read("src/greeting.txt"), "Hello, gatekeeper!\n");
    assert_eq!(
        ws.read(".ai-stack-trace/t/contract/CLAUDE_DECISIONS_OK"),
        "CLAUDE_DECISIONS_OK:t\n"
    );
    assert_eq!(
        ws.read(".ai-stack-trace/t/contract/CLAUDE_FINAL_OK"),
        "CLAUDE_FINAL_OK:t\n"
    );
    ws.gk(&["verify", "t"]).expect(0);
}
