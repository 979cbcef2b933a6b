mod common;

use std::collections::HashSet;

use common::{bits, spec, tricky_floats};
use hearth::gpu::job::{Checkpoint, GpuJob, KernelSpec};
use hearth::gpu::tensor::{digest, Tensor};
use hearth::jobs::{JobId, JobState, JobStore, ListFilter, StoreError, StoreLimits};

fn open(dir: &std::path::Path) -> JobStore {
    JobStore::open(dir, StoreLimits::default()).unwrap()
}

#[test]
fn submit_get_round_trip_is_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut s = spec("acme", 4);
    s.job = GpuJob {
        kernel: KernelSpec::MlpTrain {
            lr: 0.05,
            batch: 8,
            epochs: 3,
        },
        inputs: vec![
            Tensor::new(vec![3, 4], tricky_floats()).unwrap(),
            Tensor::new(vec![0, 5], vec![]).unwrap(),
            Tensor::new(vec![], vec![42.5]).unwrap(),
        ],
    };
    s.lease.deadline_unix_s = Some(1.9e9);
    s.lease.priority = -3;
    let id = store.submit(&s).unwrap();

    let rec = store.get(id).unwrap();
    assert_eq!(rec.id, id);
    assert_eq!(rec.state, JobState::Queued);
    assert_eq!(rec.lease, s.lease);
    assert_eq!(rec.kernel, s.job.kernel);
    assert_eq!(rec.input_shapes, vec![vec![3, 4], vec![0, 5], vec![]]);
    assert_eq!(rec.input_bytes, 13 * 4);
    assert!(rec.submitted_unix_s > 0.0 && rec.started_unix_s.is_none());
    assert_eq!(
        (rec.progress_units, rec.last_error, rec.result_digest),
        (0, None, None)
    );

    // Reopen: what load_spec returns comes from disk, bit for bit.
    drop(store);
    let store = open(dir.path());
    let back = store.load_spec(id).unwrap();
    assert_eq!(back.lease, s.lease);
    assert_eq!(back.job.kernel, s.job.kernel);
    assert_eq!(back.job.inputs.len(), 3);
    for (a, b) in back.job.inputs.iter().zip(&s.job.inputs) {
        assert_eq!(a.shape, b.shape);
        assert_eq!(bits(&a.data), bits(&b.data));
    }
    let t = store.transitions(id).unwrap();
    assert_eq!(t.len(), 1);
    assert_eq!(
        (t[0].from, t[0].to, t[0].reason.as_str()),
        (None, JobState::Queued, "submitted")
    );

    assert!(matches!(
        store.get(JobId(999)),
        Err(StoreError::NotFound(JobId(999)))
    ));
}

#[test]
fn inputs_are_stored_as_raw_le_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let s = spec("acme", 3);
    let id = store.submit(&s).unwrap();
    drop(store);
    let conn = rusqlite::Connection::open(dir.path().join("jobs.sqlite")).unwrap();
    let (shape, data): (String, Vec<u8>) = conn
        .query_row(
            "SELECT shape_json, data FROM inputs WHERE job_id = ?1 AND idx = 0",
            [id.0 as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(shape, "[3]");
    assert_eq!(data, s.job.inputs[0].le_bytes());
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, hearth::jobs::store::SCHEMA_VERSION);
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn a_version_1_store_is_migrated_and_keeps_its_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let id = store.submit(&spec("acme", 3)).unwrap();
    drop(store);
    // Turn it back into what version 1 wrote.
    let conn = rusqlite::Connection::open(dir.path().join("jobs.sqlite")).unwrap();
    conn.execute_batch(
        "DROP TABLE totals; DROP TABLE settings; DROP TABLE live_load; \
         DROP TRIGGER live_load_insert; DROP TRIGGER live_load_enter; \
         DROP TRIGGER live_load_leave; DROP TRIGGER live_load_delete; PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(conn);
    let store = open(dir.path());
    assert_eq!(store.get(id).unwrap().lease.tenant, "acme");
    assert!(store.totals().unwrap().is_empty());
    store.save_totals(&[("mining_joules", 12.5)]).unwrap();
    store.set_setting("mix", "{\"mode\":\"auto\"}").unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.totals().unwrap()["mining_joules"], 12.5);
    assert_eq!(
        store.setting("mix").unwrap().as_deref(),
        Some("{\"mode\":\"auto\"}")
    );
    assert!(store.save_totals(&[("x", f64::NAN)]).is_err());
    // A store from a newer build is refused, not misread.
    let conn = rusqlite::Connection::open(dir.path().join("jobs.sqlite")).unwrap();
    conn.execute_batch("PRAGMA user_version = 99;").unwrap();
    drop(conn);
    let e = hearth::jobs::JobStore::open(dir.path(), Default::default()).unwrap_err();
    assert!(e.to_string().contains("schema version 99"), "{e}");
}

#[test]
fn limits_give_resource_exhausted() {
    let dir = tempfile::tempdir().unwrap();
    let limits = StoreLimits {
        max_jobs_per_tenant: 2,
        max_total_input_bytes: 200,
    };
    let store = JobStore::open(dir.path(), limits).unwrap();
    let a = store.submit(&spec("a", 10)).unwrap(); // 80 bytes
    store.submit(&spec("a", 1)).unwrap(); // 8 bytes
    match store.submit(&spec("a", 1)) {
        Err(StoreError::ResourceExhausted { what, .. }) => assert_eq!(what, "max_jobs_per_tenant"),
        other => panic!("{other:?}"),
    }
    // Another tenant is not capped by a's count, but by total bytes: 88 + 120 > 200.
    match store.submit(&spec("b", 15)) {
        Err(StoreError::ResourceExhausted { what, msg }) => {
            assert_eq!(what, "max_total_input_bytes");
            assert!(msg.contains("120"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    store.submit(&spec("b", 14)).unwrap(); // 88 + 112 = 200: fits exactly
                                           // Terminal jobs no longer count against either limit.
    store
        .transition(a, JobState::Cancelled, "owner cancelled")
        .unwrap();
    store.submit(&spec("a", 1)).unwrap();
    // A refused submission leaves nothing behind.
    let (all, _) = store.list(ListFilter::default(), 100, None).unwrap();
    assert_eq!(all.len(), 4);
}

#[test]
fn invalid_lease_fields_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    type Edit = Box<dyn Fn(&mut hearth::jobs::JobSpec)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("lease.tenant", Box::new(|s| s.lease.tenant = String::new())),
        (
            "lease.tenant",
            Box::new(|s| s.lease.tenant = "x".repeat(65)),
        ),
        (
            "lease.tenant",
            Box::new(|s| s.lease.tenant = "bad tenant".into()),
        ),
        (
            "lease.price_per_gpu_second",
            Box::new(|s| s.lease.price_per_gpu_second = -1.0),
        ),
        (
            "lease.price_per_gpu_second",
            Box::new(|s| s.lease.price_per_gpu_second = f64::NAN),
        ),
        (
            "lease.deadline_unix_s",
            Box::new(|s| s.lease.deadline_unix_s = Some(f64::INFINITY)),
        ),
        (
            "job.inputs[1]",
            Box::new(|s| s.job.inputs[1].shape = vec![99]),
        ),
    ];
    for (field, f) in cases {
        let mut s = spec("ok", 2);
        f(&mut s);
        match store.submit(&s) {
            Err(e @ StoreError::InvalidArgument { .. }) => {
                assert!(e.to_string().starts_with(&format!("{field}: ")), "{e}");
            }
            other => panic!("{field}: {other:?}"),
        }
    }
    let (all, next) = store.list(ListFilter::default(), 10, None).unwrap();
    assert!(all.is_empty() && next.is_none());
}

#[test]
fn transitions_are_checked_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let id = store.submit(&spec("t", 2)).unwrap();

    let e = store.transition(id, JobState::Paused, "nope").unwrap_err();
    match &e {
        StoreError::FailedPrecondition(m) => {
            assert!(m.contains("QUEUED") && m.contains("PAUSED"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    store
        .transition(id, JobState::Running, "leased to gpu0")
        .unwrap();
    store
        .transition(id, JobState::Paused, "operator pause")
        .unwrap();
    store.transition(id, JobState::Running, "resumed").unwrap();
    store.transition(id, JobState::Queued, "preempted").unwrap();
    store
        .transition(id, JobState::Running, "leased to gpu1")
        .unwrap();
    store
        .transition(id, JobState::Failed, "device lost 3 times")
        .unwrap();
    for to in JobState::ALL {
        if to == JobState::Succeeded {
            continue; // refused as InvalidArgument: finish() sets it
        }
        let e = store.transition(id, to, "after the end").unwrap_err();
        assert!(
            matches!(e, StoreError::FailedPrecondition(ref m) if m.contains("FAILED")),
            "{e}"
        );
    }
    assert!(matches!(
        store.transition(id, JobState::Succeeded, "x"),
        Err(StoreError::InvalidArgument { ref field, .. }) if field == "to"
    ));

    let rec = store.get(id).unwrap();
    assert_eq!(rec.state, JobState::Failed);
    assert_eq!(rec.last_error.as_deref(), Some("device lost 3 times"));
    assert!(rec.started_unix_s.is_some() && rec.finished_unix_s.is_some());

    let got: Vec<(Option<JobState>, JobState, String)> = store
        .transitions(id)
        .unwrap()
        .into_iter()
        .map(|t| (t.from, t.to, t.reason))
        .collect();
    use JobState::*;
    let want = [
        (None, Queued, "submitted"),
        (Some(Queued), Running, "leased to gpu0"),
        (Some(Running), Paused, "operator pause"),
        (Some(Paused), Running, "resumed"),
        (Some(Running), Queued, "preempted"),
        (Some(Queued), Running, "leased to gpu1"),
        (Some(Running), Failed, "device lost 3 times"),
    ];
    let want: Vec<_> = want
        .iter()
        .map(|(a, b, c)| (*a, *b, c.to_string()))
        .collect();
    assert_eq!(got, want);
    assert!(matches!(
        store.transition(JobId(77), Running, "x"),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn pagination_returns_every_job_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut ids = Vec::new();
    for i in 0..25 {
        let tenant = if i % 3 == 0 { "three" } else { "other" };
        ids.push(store.submit(&spec(tenant, 1)).unwrap());
    }
    let mut seen = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let (page, next) = store.list(ListFilter::default(), 10, token).unwrap();
        assert!(page.len() <= 10);
        pages += 1;
        seen.extend(page.iter().map(|r| r.id));
        match next {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ids); // all, once, in id order
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 25);

    // Filters, and a token that stays valid across inserts.
    for i in [0usize, 3, 6] {
        store.transition(ids[i], JobState::Running, "go").unwrap();
    }
    let f = ListFilter {
        tenant: Some("three".into()),
        state: Some(JobState::Queued),
    };
    let (p1, t1) = store.list(f.clone(), 3, None).unwrap();
    store.submit(&spec("three", 1)).unwrap();
    let (p2, t2) = store.list(f.clone(), 3, t1).unwrap();
    let got: Vec<JobId> = p1.iter().chain(&p2).map(|r| r.id).collect();
    let want: Vec<JobId> = [9, 12, 15, 18, 21, 24].iter().map(|&i| ids[i]).collect();
    assert_eq!(got, want);
    let (p3, t3) = store.list(f, 3, t2).unwrap();
    assert_eq!(p3.len(), 1); // the one submitted mid-listing
    assert!(t3.is_none());

    // Clamping and bad tokens.
    let (one, _) = store.list(ListFilter::default(), 0, None).unwrap();
    assert_eq!(one.len(), 1);
    let (all, next) = store.list(ListFilter::default(), 5000, None).unwrap();
    assert_eq!((all.len(), next), (26, None));
    for bad in [
        "garbage",
        "after-",
        "after-x1",
        "after--1",
        "after-99999999999999999999",
    ] {
        match store.list(ListFilter::default(), 10, Some(bad.into())) {
            Err(StoreError::InvalidArgument { field, .. }) => assert_eq!(field, "page_token"),
            other => panic!("{bad}: {other:?}"),
        }
    }
}

#[test]
fn checkpoints_round_trip_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let id = store.submit(&spec("c", 2)).unwrap();
    assert_eq!(store.checkpoint(id).unwrap(), None);
    store.transition(id, JobState::Running, "go").unwrap();
    let first = Checkpoint {
        done: 3,
        state: vec![vec![1.0; 5], vec![], tricky_floats()],
    };
    store.save_checkpoint(id, &first).unwrap();
    let second = Checkpoint {
        done: 7,
        state: vec![tricky_floats(), vec![2.0, 3.0]],
    };
    store.save_checkpoint(id, &second).unwrap();
    drop(store);
    let store = open(dir.path());
    let cp = store.checkpoint(id).unwrap().unwrap();
    assert_eq!(cp.done, 7);
    assert_eq!(cp.state.len(), 2, "replaces, not appends");
    for (a, b) in cp.state.iter().zip(&second.state) {
        assert_eq!(bits(a), bits(b));
    }
    assert_eq!(store.get(id).unwrap().progress_units, 7);

    // Terminal jobs drop their checkpoint and take no new one.
    store.transition(id, JobState::Cancelled, "owner").unwrap();
    assert_eq!(store.checkpoint(id).unwrap(), None);
    assert!(matches!(
        store.save_checkpoint(id, &second),
        Err(StoreError::FailedPrecondition(_))
    ));
}

#[test]
fn results_are_verified_and_tampering_detected() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let id = store.submit(&spec("r", 2)).unwrap();
    let outputs = vec![
        Tensor::new(vec![2, 3], tricky_floats()[..6].to_vec()).unwrap(),
        Tensor::new(vec![0], vec![]).unwrap(),
        Tensor::new(vec![2], vec![7.0, -7.0]).unwrap(),
    ];
    let d = digest(&outputs);

    // Not running yet: refused, and no file written.
    assert!(matches!(
        store.finish(id, &outputs, &d, 1.0, 2.0, "done"),
        Err(StoreError::FailedPrecondition(_))
    ));
    assert_eq!(
        std::fs::read_dir(dir.path().join("results"))
            .unwrap()
            .count(),
        0
    );

    store.transition(id, JobState::Running, "go").unwrap();
    store.record_usage(id, 1.5, 300.0, 0.0015).unwrap();
    // A digest that is not the outputs' is refused.
    let wrong = "0".repeat(64);
    assert!(matches!(
        store.finish(id, &outputs, &wrong, 1.0, 2.0, "done"),
        Err(StoreError::InvalidArgument { ref field, .. }) if field == "digest"
    ));
    store
        .finish(id, &outputs, &d, 0.5, 100.0, "all units done")
        .unwrap();

    let rec = store.get(id).unwrap();
    assert_eq!(rec.state, JobState::Succeeded);
    assert_eq!(rec.result_digest.as_deref(), Some(d.as_str()));
    assert_eq!(rec.usage.gpu_seconds, 2.0);
    assert_eq!(rec.usage.joules, 400.0);
    assert_eq!(rec.usage.earned, 0.0015);
    let last = store.transitions(id).unwrap().pop().unwrap();
    assert_eq!(
        (last.to, last.reason.as_str()),
        (JobState::Succeeded, "all units done")
    );

    drop(store);
    let store = open(dir.path());
    let (back, dig) = store.result(id).unwrap();
    assert_eq!(dig, d);
    assert_eq!(back.len(), 3);
    for (a, b) in back.iter().zip(&outputs) {
        assert_eq!(a.shape, b.shape);
        assert_eq!(bits(&a.data), bits(&b.data));
    }
    // Only the result file is left in results/ (no temp files).
    let names: Vec<String> = std::fs::read_dir(dir.path().join("results"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec![format!("{d}.bin")]);

    // Flip one bit of the file: detected.
    let path = dir.path().join("results").join(format!("{d}.bin"));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[5] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    match store.result(id) {
        Err(e @ StoreError::Corrupt(_)) => assert!(e.to_string().contains("SHA-256"), "{e}"),
        other => panic!("{other:?}"),
    }
    // Truncated or missing: also errors.
    std::fs::write(&path, &bytes[..8]).unwrap();
    assert!(matches!(store.result(id), Err(StoreError::Corrupt(_))));
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(store.result(id), Err(StoreError::Io { .. })));

    // A job without a result says so.
    let other = store.submit(&spec("r", 1)).unwrap();
    assert!(matches!(
        store.result(other),
        Err(StoreError::FailedPrecondition(_))
    ));
    assert!(matches!(
        store.record_usage(other, -1.0, 0.0, 0.0),
        Err(StoreError::InvalidArgument { ref field, .. }) if field == "gpu_seconds"
    ));
}

#[test]
fn recover_requeues_running_jobs_in_queue_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let s = |tenant: &str, deadline: Option<f64>, priority: i32| {
        let mut s = spec(tenant, 1);
        s.lease.deadline_unix_s = deadline;
        s.lease.priority = priority;
        store.submit(&s).unwrap()
    };
    let low = s("a", None, 0);
    let high = s("a", None, 5);
    let due = s("a", Some(1.0), 0); // long overdue
    let done = s("a", None, 9);
    let paused = s("a", None, 1);
    store.transition(high, JobState::Running, "go").unwrap();
    store.transition(done, JobState::Running, "go").unwrap();
    store
        .finish(done, &[], &digest(&[]), 0.0, 0.0, "done")
        .unwrap();
    store.transition(paused, JobState::Running, "go").unwrap();
    store.transition(paused, JobState::Paused, "hold").unwrap();
    drop(store);

    let store = open(dir.path());
    assert_eq!(store.recover().unwrap(), vec![due, high, paused, low]);
    assert_eq!(store.get(high).unwrap().state, JobState::Queued);
    assert_eq!(store.get(paused).unwrap().state, JobState::Paused);
    let t = store.transitions(high).unwrap().pop().unwrap();
    assert_eq!(
        (t.from, t.to, t.reason.as_str()),
        (
            Some(JobState::Running),
            JobState::Queued,
            "recovered after restart"
        )
    );
    // Recovering again changes nothing.
    assert_eq!(store.recover().unwrap(), vec![due, high, paused, low]);
    assert_eq!(store.transitions(high).unwrap().len(), 3);
}

#[test]
fn many_connections_opening_a_fresh_store_at_once_all_succeed() {
    // The daemon starting while the CLI submits: both open (and migrate) the same new file.
    for _ in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let opened: Vec<Result<JobStore, StoreError>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..6)
                .map(|_| s.spawn(|| JobStore::open(dir.path(), StoreLimits::default())))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for r in opened {
            let store = r.unwrap();
            store.submit(&spec("acme", 1)).unwrap();
        }
        let (jobs, _) = open(dir.path())
            .list(ListFilter::default(), 100, None)
            .unwrap();
        assert_eq!(jobs.len(), 6);
    }
}

#[test]
fn a_version_2_store_is_migrated_with_its_live_load_counted() {
    let dir = tempfile::tempdir().unwrap();
    let limits = StoreLimits {
        max_jobs_per_tenant: 2,
        max_total_input_bytes: 1 << 20,
    };
    let store = JobStore::open(dir.path(), limits.clone()).unwrap();
    let first = store.submit(&spec("a", 3)).unwrap();
    store.submit(&spec("a", 3)).unwrap();
    drop(store);
    // Turn it back into what version 2 wrote: no load table, no triggers.
    let conn = rusqlite::Connection::open(dir.path().join("jobs.sqlite")).unwrap();
    conn.execute_batch(
        "DROP TRIGGER live_load_insert; DROP TRIGGER live_load_enter; \
         DROP TRIGGER live_load_leave; DROP TRIGGER live_load_delete; \
         DROP TABLE live_load; PRAGMA user_version = 2;",
    )
    .unwrap();
    drop(conn);
    let store = JobStore::open(dir.path(), limits).unwrap();
    // The two jobs stored before the upgrade count against the cap.
    assert!(matches!(
        store.submit(&spec("a", 1)),
        Err(StoreError::ResourceExhausted {
            what: "max_jobs_per_tenant",
            ..
        })
    ));
    store
        .transition(first, JobState::Cancelled, "owner cancelled")
        .unwrap();
    store.submit(&spec("a", 1)).unwrap();
}

#[test]
fn a_batch_stores_the_good_specs_and_refuses_each_bad_one_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let limits = StoreLimits {
        max_jobs_per_tenant: 2,
        max_total_input_bytes: 1 << 20,
    };
    let store = JobStore::open(dir.path(), limits).unwrap();
    let mut nameless = spec("x", 2);
    nameless.lease.tenant = String::new();
    let specs = [
        spec("a", 2),
        spec("a", 3),
        spec("a", 4),
        nameless,
        spec("b", 5),
    ];
    let refs: Vec<&hearth::jobs::JobSpec> = specs.iter().collect();
    let out = store.submit_many(&refs);
    assert_eq!(out.len(), 5);
    assert!(matches!(
        &out[2],
        Err(StoreError::ResourceExhausted {
            what: "max_jobs_per_tenant",
            ..
        })
    ));
    assert!(
        matches!(&out[3], Err(StoreError::InvalidArgument { field, .. }) if field == "lease.tenant"),
        "{:?}",
        out[3]
    );
    let stored: Vec<_> = [0, 1, 4]
        .iter()
        .map(|&i| out[i].as_ref().unwrap().clone())
        .collect();
    assert!(stored.windows(2).all(|w| w[0].id.0 < w[1].id.0));
    // The record a submit answers with is the one the store keeps.
    for r in &stored {
        assert_eq!(&store.get(r.id).unwrap(), r);
    }
    let (all, _) = store.list(ListFilter::default(), 100, None).unwrap();
    assert_eq!(all.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submits_through_group_commit_are_each_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(open(dir.path()));
    let commits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = commits.clone();
    let gc = hearth::jobs::GroupCommit::start(store.clone(), move || {
        c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    })
    .unwrap();
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let gc = gc.clone();
            tokio::spawn(async move { gc.submit(spec(&format!("t{}", i % 7), 2)).await })
        })
        .collect();
    let mut ids = HashSet::new();
    for t in tasks {
        let rec = t.await.unwrap().unwrap();
        assert_eq!(rec.state, JobState::Queued);
        assert!(ids.insert(rec.id));
    }
    let (all, _) = store.list(ListFilter::default(), 1000, None).unwrap();
    assert_eq!(all.len(), 300);
    let n = commits.load(std::sync::atomic::Ordering::Relaxed);
    assert!((1..=300).contains(&n), "{n} commits");
}
