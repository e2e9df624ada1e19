use std::sync::mpsc;
use std::time::Duration;

use serde_json::json;

use super::files::{FileStoreOptions, create_record, update_record};
use super::*;

fn record(id: &str, created_at: &str) -> TaskRecord {
    serde_json::from_value(json!({
        "task_id": id,
        "source": "api",
        "correlation_id": format!("corr-{id}"),
        "created_at": created_at,
        "updated_at": created_at,
        "version": 0,
        "request_text": format!("do {id}"),
    }))
    .unwrap()
}

#[track_caller]
fn check_id(raw: &str, valid: bool) {
    assert_eq!(TaskId::parse(raw).is_ok(), valid, "{raw:?}");
}

#[test]
fn task_id_rule() {
    check_id("a", true);
    check_id("Task-1.v2_x", true);
    check_id(&"a".repeat(128), true);
    check_id(&"a".repeat(129), false);
    check_id("", false);
    check_id(".hidden", false);
    check_id("-dash", false);
    check_id("a..b", false);
    check_id("../etc", false);
    check_id("a/b", false);
    check_id("a\\b", false);
    check_id("a b", false);
    check_id("é", false);
    check_id("a\0", false);
}

#[track_caller]
fn check_status(patch: serde_json::Value, expected: Status) {
    let mut value = serde_json::to_value(record("t", "2026-01-01T00:00:00Z")).unwrap();
    for (k, v) in patch.as_object().unwrap() {
        value[k] = v.clone();
    }
    let r: TaskRecord = serde_json::from_value(value).unwrap();
    assert_eq!(status_of(&r), expected);
}

#[test]
fn status_view() {
    let approved = json!({"verdict": "approved", "by": "a", "at": "x"});
    let rejected = json!({"verdict": "rejected", "by": "a", "at": "x"});
    let final_ok = json!({"task": "t", "step": 6, "state": "done", "contracts": ["CLAUDE_DECISIONS_OK", "CLAUDE_FINAL_OK"]});
    let decisions_only =
        json!({"task": "t", "step": 2, "state": "done", "contracts": ["CLAUDE_DECISIONS_OK"]});
    check_status(json!({}), Status::Pending);
    check_status(json!({"pipeline": decisions_only}), Status::Pending);
    check_status(json!({"task_result": null}), Status::Pending);
    check_status(
        json!({"task_result": {"work_log": []}}),
        Status::NeedsReview,
    );
    check_status(json!({"pipeline": final_ok}), Status::NeedsReview);
    check_status(json!({"decision": approved}), Status::Approved);
    check_status(
        json!({"decision": rejected, "pipeline": final_ok}),
        Status::Rejected,
    );
}

#[test]
fn body_is_canonical_with_status_and_keeps_unknown_keys() {
    let mut r = record("t1", "2026-01-01T00:00:00Z");
    r.extra
        .insert("zz_protocol".into(), json!({"b": 1, "a": 2}));
    let task = StoredTask::new(r.clone());
    let text = std::str::from_utf8(&task.body).unwrap();
    assert!(text.starts_with(r#"{"acceptance_criteria":[],"ci_status":null,"#));
    assert!(text.contains(r#""status":"pending""#));
    assert!(text.ends_with(r#""zz_protocol":{"a":2,"b":1}}"#));
    assert_eq!(StoredTask::new(r).body, task.body);
    assert_eq!(task.created_ms, 1_767_225_600_000);
}

#[test]
fn cursor_round_trip_and_garbage() {
    let c = Cursor {
        created_ms: -5,
        task_id: "a.b".into(),
    };
    assert_eq!(Cursor::decode(&c.encode()), Some(c));
    for bad in [
        "",
        "zz",
        "6162",
        &hex::encode("1:../x"),
        &hex::encode("x:a"),
    ] {
        assert_eq!(Cursor::decode(bad), None, "{bad}");
    }
}

fn open(dir: &std::path::Path, watch: bool) -> (FileStore, mpsc::Receiver<TaskChange>) {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let store = FileStore::open(FileStoreOptions {
        dir: dir.to_path_buf(),
        sink: Arc::new(move |c| {
            let _ = tx.lock().unwrap().send(c);
        }),
        watch,
    })
    .unwrap();
    (store, rx)
}

fn decide(verdict: Verdict) -> Mutation {
    Box::new(move |r: &mut TaskRecord| {
        r.decision = Some(Decision {
            verdict,
            by: "t".into(),
            reason: None,
            at: "now".into(),
        });
        r.history.push(HistoryEntry {
            at: "now".into(),
            event: verdict.as_str().into(),
            by: None,
            version: None,
            reason: None,
            extra: BTreeMap::new(),
        });
        Ok(())
    })
}

#[tokio::test]
async fn file_store_writes_versions_and_if_match() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, changes) = open(tmp.path(), false);
    let t = store
        .create(record("t1", "2026-01-01T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(t.record.version, 1);
    assert!(matches!(
        store.create(record("t1", "2026-01-01T00:00:00Z")).await,
        Err(StoreError::Exists(_))
    ));
    let id = TaskId::parse("t1").unwrap();
    let t = store
        .update(id.clone(), Some(1), decide(Verdict::Approved))
        .await
        .unwrap();
    assert_eq!((t.record.version, t.status), (2, Status::Approved));
    assert_eq!(t.record.history.last().unwrap().version, Some(2));
    assert!(matches!(
        store
            .update(id.clone(), Some(1), decide(Verdict::Rejected))
            .await,
        Err(StoreError::VersionMismatch {
            expected: 1,
            actual: 2,
            ..
        })
    ));
    assert!(matches!(
        store
            .update(
                TaskId::parse("nope").unwrap(),
                None,
                decide(Verdict::Rejected)
            )
            .await,
        Err(StoreError::NotFound(_))
    ));
    let refused = store
        .update(
            id.clone(),
            None,
            Box::new(|_| Err(StoreError::Invalid("no".into()))),
        )
        .await;
    assert!(matches!(refused, Err(StoreError::Invalid(_))));
    // What is on disk is what is served, and nothing was written by the refusals.
    let on_disk: TaskRecord =
        serde_json::from_slice(&std::fs::read(tmp.path().join("t1.json")).unwrap()).unwrap();
    assert_eq!(on_disk, store.get(&id).await.unwrap().unwrap().record);
    let seen: Vec<(u64, Origin)> = changes.try_iter().map(|c| (c.version, c.origin)).collect();
    assert_eq!(seen, vec![(1, Origin::Store), (2, Origin::Store)]);
    // A reopened store loads the same record.
    drop(store);
    let (again, _) = open(tmp.path(), false);
    assert_eq!(again.get(&id).await.unwrap().unwrap().record, on_disk);
}

#[tokio::test]
async fn list_is_newest_first_paged_and_filtered() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _changes) = open(tmp.path(), false);
    for i in 0..5 {
        store
            .create(record(
                &format!("t{i}"),
                &format!("2026-01-0{}T00:00:00Z", i + 1),
            ))
            .await
            .unwrap();
    }
    store
        .update(
            TaskId::parse("t3").unwrap(),
            None,
            decide(Verdict::Approved),
        )
        .await
        .unwrap();
    let ids = |p: &Page| {
        p.tasks
            .iter()
            .map(|t| t.record.task_id.clone())
            .collect::<Vec<_>>()
    };
    let query = |limit, cursor, status| ListQuery {
        status,
        limit,
        cursor,
    };
    let first = store.list(query(2, None, None)).await.unwrap();
    assert_eq!(ids(&first), ["t4", "t3"]);
    let cursor = Cursor::decode(first.next_cursor.as_deref().unwrap());
    let second = store.list(query(2, cursor, None)).await.unwrap();
    assert_eq!(ids(&second), ["t2", "t1"]);
    let cursor = Cursor::decode(second.next_cursor.as_deref().unwrap());
    let last = store.list(query(2, cursor, None)).await.unwrap();
    assert_eq!(
        (ids(&last), last.next_cursor),
        (vec!["t0".to_owned()], None)
    );
    let pending = store
        .list(query(10, None, Some(Status::Pending)))
        .await
        .unwrap();
    assert_eq!(ids(&pending), ["t4", "t2", "t1", "t0"]);
}

#[tokio::test]
async fn changes_by_other_writers_are_noticed_and_bad_files_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("broken.json"), b"{not json").unwrap();
    std::fs::write(tmp.path().join(".gk-tmp-x.json"), b"{").unwrap();
    let (store, changes) = open(tmp.path(), true);
    assert_eq!(store.load_errors().len(), 1, "{:?}", store.load_errors());
    assert!(store.load_errors()[0].contains("broken.json"));
    // Another process creates and then updates a record through the same locked write path.
    create_record(tmp.path(), record("ext", "2026-01-01T00:00:00Z")).unwrap();
    let id = TaskId::parse("ext").unwrap();
    update_record(tmp.path(), &id, Some(1), decide(Verdict::Rejected)).unwrap();
    let mut seen = Vec::new();
    while seen.last().map(|c: &TaskChange| c.version) != Some(2) {
        let change = changes
            .recv_timeout(Duration::from_secs(10))
            .expect("the watcher reports the change");
        assert_eq!(change.origin, Origin::External);
        seen.push(change);
    }
    assert_eq!(seen.last().unwrap().status, Status::Rejected);
    let served = store.get(&id).await.unwrap().unwrap();
    assert_eq!(served.record.version, 2);
    // The store's own write after an external one continues the version sequence.
    let t = store
        .update(id, None, decide(Verdict::Approved))
        .await
        .unwrap();
    assert_eq!(t.record.version, 3);
}
