//! Usage and configuration errors (exit 2, SPEC §1, §5, §11) and the small commands: `init`,
//! `new`, `demo`, `status` over every task.

use crate::support::{PATCH_PROMPT, Ws};

#[test]
fn a_task_name_with_dot_dot_is_a_usage_error_and_touches_nothing() {
    let ws = Ws::new();
    for args in [
        &["step", "0", "../x"][..],
        &["run", "../x"],
        &["new", "../x", "-m", "escape"],
        &["status", "../x"],
        &["verify", "../x"],
    ] {
        let run = ws.gk(args).expect(2);
        assert!(run.stderr.contains("invalid task name"), "{}", run.stderr);
    }
    assert!(!ws.exists(".ai-stack-trace"));
    assert!(!ws.exists("docs"));
    assert!(!ws.root().join("../x").exists());
    assert!(!ws.root().join("../x.md").exists());
    assert_eq!(ws.git_status(), Vec::<String>::new());
}

#[test]
fn upper_case_and_slashes_are_not_task_names() {
    let ws = Ws::new();
    for bad in ["T", "a/b", "-a", ".a", "a..b"] {
        ws.gk(&["step", "0", bad]).expect(2);
    }
}

#[test]
fn an_unknown_key_in_the_configuration_names_file_line_and_key() {
    let ws = Ws::new();
    ws.config("version: 1\nfix_attempts: 2\nreview_roundz: 3\n");
    ws.prompt("t", PATCH_PROMPT);
    let run = ws.gk(&["step", "0", "t"]).expect(2);
    assert!(run.stderr.contains("gatekeeper.yaml:3"), "{}", run.stderr);
    assert!(run.stderr.contains("review_roundz"), "{}", run.stderr);
    assert!(run.stderr.contains("hint:"), "{}", run.stderr);
    assert!(!ws.exists(".ai-stack-trace"));
}

#[test]
fn an_unknown_nested_key_names_its_path() {
    let ws = Ws::new();
    ws.config("version: 1\nroles:\n  claude: { provider: standin, modle: x }\n");
    let run = ws.gk(&["status"]).expect(2);
    assert!(run.stderr.contains("gatekeeper.yaml:3"), "{}", run.stderr);
    assert!(run.stderr.contains("modle"), "{}", run.stderr);
    assert!(run.stderr.contains("roles.claude"), "{}", run.stderr);
}

#[test]
fn an_unsupported_configuration_version_is_a_usage_error() {
    let ws = Ws::new();
    ws.config("version: 2\n");
    let run = ws.gk(&["status"]).expect(2);
    assert!(run.stderr.contains("version: 2"), "{}", run.stderr);
}

#[test]
fn a_step_the_pipeline_does_not_have_is_a_usage_error() {
    let ws = Ws::with_patch_task();
    let run = ws.gk(&["step", "42", "t"]).expect(2);
    assert!(run.stderr.contains("no step 42"), "{}", run.stderr);
    assert!(run.stderr.contains("hint:"), "{}", run.stderr);
    assert!(!ws.exists(".ai-stack-trace"));
    ws.gk(&["run", "t", "--to", "42"]).expect(2);
    assert!(!ws.exists(".ai-stack-trace"));
}

#[test]
fn bad_arguments_are_usage_errors() {
    let ws = Ws::new();
    ws.gk(&["step", "zero", "t"]).expect(2);
    ws.gk(&["step"]).expect(2);
    ws.gk(&["frobnicate"]).expect(2);
    ws.gk(&["status", "--jsn"]).expect(2);
}

#[test]
fn help_and_version_exit_0() {
    let ws = Ws::new();
    let run = ws.gk(&["--help"]).expect(0);
    assert!(run.stdout.contains("Usage: gatekeeper"), "{}", run.stdout);
    let run = ws.gk(&["--version"]).expect(0);
    assert!(run.stdout.starts_with("gatekeeper "), "{}", run.stdout);
}

#[test]
fn outside_a_git_repository_is_a_usage_error() {
    let ws = Ws::new();
    let outside = ws.scratch("not-a-repo");
    std::fs::create_dir_all(&outside).expect("mkdir");
    let run = ws
        .cmd(&["status"])
        .current_dir(&outside)
        .output()
        .expect("run");
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("not inside a git repository"));
}

#[test]
fn verify_of_a_task_without_a_ledger_is_a_usage_error() {
    let ws = Ws::new();
    let run = ws.gk(&["verify", "t"]).expect(2);
    assert!(run.stderr.contains("gatekeeper step 0 t"), "{}", run.stderr);
}

// ----- init ------------------------------------------------------------------------------

#[test]
fn init_writes_a_configuration_that_parses_and_the_prompt_folder() {
    let ws = Ws::new();
    let run = ws.gk(&["init"]).expect(0);
    assert!(run.stdout.contains("gatekeeper.yaml"), "{}", run.stdout);
    let text = ws.read("gatekeeper.yaml");
    let config = gatekeeper::config::Config::parse(text.as_bytes(), "gatekeeper.yaml")
        .expect("the written configuration parses");
    assert_eq!(config.pipeline, "ai-stack-trace");
    assert!(ws.path("docs/ai-gated/prompt").is_dir());
    // And the binary itself accepts it.
    ws.gk(&["status"]).expect(0);
}

#[test]
fn init_refuses_to_overwrite_an_existing_configuration() {
    let ws = Ws::new();
    ws.gk(&["init"]).expect(0);
    ws.config("version: 1\n# mine\n");
    let run = ws.gk(&["init"]).expect(2);
    assert!(run.stderr.contains("already exists"), "{}", run.stderr);
    assert_eq!(ws.read("gatekeeper.yaml"), "version: 1\n# mine\n");
}

// ----- new -------------------------------------------------------------------------------

#[test]
fn new_writes_the_prompt_from_a_message() {
    let ws = Ws::new();
    let run = ws.gk(&["new", "t", "-m", "Greet gatekeeper"]).expect(0);
    assert!(
        run.stdout.contains("docs/ai-gated/prompt/t.md"),
        "{}",
        run.stdout
    );
    assert_eq!(ws.read("docs/ai-gated/prompt/t.md"), "Greet gatekeeper\n");
}

#[test]
fn new_refuses_an_existing_prompt() {
    let ws = Ws::new();
    ws.gk(&["new", "t", "-m", "first"]).expect(0);
    let run = ws.gk(&["new", "t", "-m", "second"]).expect(2);
    assert!(run.stderr.contains("already exists"), "{}", run.stderr);
    assert_eq!(ws.read("docs/ai-gated/prompt/t.md"), "first\n");
}

#[test]
fn new_copies_a_prompt_file() {
    let ws = Ws::new();
    let source = ws.scratch("prompt.md");
    std::fs::write(&source, PATCH_PROMPT).expect("write");
    ws.gk(&["new", "t", "--file", &source.to_string_lossy()])
        .expect(0);
    assert_eq!(ws.read("docs/ai-gated/prompt/t.md"), PATCH_PROMPT);
}

#[test]
fn a_prompt_written_by_new_runs_through_step_0() {
    let ws = Ws::new();
    ws.gk(&["new", "t", "-m", "Greet gatekeeper"]).expect(0);
    ws.gk(&["step", "0", "t"]).expect(0);
    assert_eq!(
        ws.read(".ai-stack-trace/t/inputs/prompt.md"),
        "Greet gatekeeper\n"
    );
}

// ----- demo ------------------------------------------------------------------------------

#[test]
fn demo_builds_a_repository_whose_ledger_verifies() {
    let ws = Ws::new();
    let dir = ws.scratch("demo");
    let dir_s = dir.to_string_lossy().into_owned();
    let run = ws.gk(&["demo", &dir_s]).expect(0);
    assert!(run.stdout.contains("step 8 `commit`"), "{}", run.stdout);
    let verify = ws
        .cmd(&["-C", &dir_s, "verify", "greeting"])
        .output()
        .expect("verify");
    assert_eq!(
        verify.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("src/greeting.txt")).expect("greeting"),
        "Hello, gatekeeper!\n"
    );
    assert!(
        dir.join(".ai-stack-trace/greeting/final/status.json")
            .is_file()
    );
    let repo = git2::Repository::open(&dir).expect("demo repo");
    let mut opts = git2::StatusOptions::new();
    opts.include_untracked(true);
    assert!(
        repo.statuses(Some(&mut opts)).expect("status").is_empty(),
        "the demo leaves a clean tree"
    );
}

#[test]
fn demo_into_a_non_empty_folder_is_a_usage_error() {
    let ws = Ws::new();
    let dir = ws.scratch("busy");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("keep.txt"), "mine\n").expect("write");
    let run = ws.gk(&["demo", &dir.to_string_lossy()]).expect(2);
    assert!(run.stderr.contains("not empty"), "{}", run.stderr);
    assert_eq!(
        std::fs::read_dir(&dir).expect("read").count(),
        1,
        "demo wrote into a non-empty folder"
    );
}

// ----- status over every task ------------------------------------------------------------

#[test]
fn status_without_a_task_lists_every_task() {
    let ws = Ws::new();
    ws.prompt("alpha", PATCH_PROMPT);
    ws.prompt("beta", "# Beta\n\nNothing yet.\n");
    ws.commit("prompts");
    ws.gk(&["step", "0", "alpha"]).expect(0);
    ws.gk(&["step", "0", "beta"]).expect(0);
    ws.gk(&["step", "1", "beta"]).expect(0);
    let run = ws.gk(&["status"]).expect(0);
    let rows: Vec<&str> = run.stdout.lines().collect();
    assert!(rows[0].starts_with("TASK"), "{}", run.stdout);
    assert!(
        rows.iter().any(|r| r.starts_with("alpha")
            && r.contains("1/9")
            && r.contains("gatekeeper step 1 alpha")),
        "{}",
        run.stdout
    );
    assert!(
        rows.iter().any(|r| r.starts_with("beta")
            && r.contains("2/9")
            && r.contains("gatekeeper step 2 beta")),
        "{}",
        run.stdout
    );
    let json: serde_json::Value =
        serde_json::from_str(&ws.gk(&["status", "--json"]).expect(0).stdout).expect("json");
    let tasks: Vec<&str> = json["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["task"].as_str().expect("task"))
        .collect();
    assert_eq!(tasks, ["alpha", "beta"]);
}

#[test]
fn status_without_tasks_says_so() {
    let ws = Ws::new();
    let run = ws.gk(&["status"]).expect(0);
    assert!(run.stdout.contains("no tasks yet"), "{}", run.stdout);
}

#[test]
fn task_names_are_at_most_64_characters() {
    let ws = Ws::new();
    let longest = "a".repeat(64);
    ws.gk(&["new", &longest, "-m", "long"]).expect(0);
    ws.gk(&["new", &"a".repeat(65), "-m", "too long"]).expect(2);
}

#[test]
fn new_refuses_an_empty_message() {
    let ws = Ws::new();
    ws.gk(&["new", "t", "-m", "  "]).expect(2);
    assert!(!ws.exists("docs/ai-gated/prompt/t.md"));
}
