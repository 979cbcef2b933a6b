//! Accepted jobs survive `kill -9` of the real daemon: start `hearth serve`, submit jobs over
//! gRPC with `hearth jobs submit --addr`, kill the daemon while a job is mid-run, start it again,
//! and every job finishes with the digest of an uninterrupted `hearth gpu run` of the same job.

use std::path::Path;
use std::time::{Duration, Instant};

use hearth::jobs::{JobId, JobState, JobStore, StoreLimits};

mod common;
use common::bin::{free_addr, hearth, ok};
use common::reference_digest;
use common::serve::{sigterm, Daemon};

fn serve(dir: &Path, addr: &str) -> Daemon {
    let child = common::serve::serve("20", addr, dir, &free_addr())
        // A cold room: the budget is high; only the GPU and the element take it.
        .env("HEARTH_SIMULATION__INITIAL_CELSIUS", "15")
        .env("HEARTH_MINING__ENABLED", "false")
        .env("HEARTH_GPU__ADAPTER", "software")
        // Checkpoint often so that a kill lands after one.
        .env("HEARTH_GPU__RUNNER__CHECKPOINT_EVERY_SECONDS", "0.2")
        .spawn()
        .unwrap();
    Daemon(child)
}

/// The jobs, as `hearth jobs submit` / `hearth gpu run` arguments.
const JOBS: [&[&str]; 3] = [
    &["mlp_train", "--size", "4096,32,64,4", "--epochs", "24"],
    &["matmul", "--size", "256,256,256"],
    &["softmax", "--size", "64,1000"],
];

/// Submits over gRPC to the daemon at `url`; the owner token is in `dir`.
fn submit(dir: &Path, url: &str, args: &[&str]) -> JobId {
    let out = hearth()
        .args(["jobs", "submit"])
        .args(args)
        .args(["--price", "0.002", "--json", "--addr", url, "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    JobId(v["id"].as_u64().unwrap())
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn accepted_jobs_survive_kill_9_and_finish_with_the_uninterrupted_digest() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let addr = free_addr();
    let url = format!("http://{addr}");
    let first = serve(d, &addr);
    // The API answers once the daemon is up.
    wait_until("the API", Duration::from_secs(60), || {
        hearth()
            .args(["jobs", "list", "--json", "--addr", &url, "--data-dir"])
            .arg(d)
            .output()
            .unwrap()
            .status
            .success()
    });
    let ids: Vec<JobId> = JOBS.iter().map(|a| submit(d, &url, a)).collect();
    let store = JobStore::open(d, StoreLimits::default()).unwrap();

    // Kill the daemon once the long job is on the GPU and has a stored checkpoint.
    let train = ids[0];
    wait_until("a stored checkpoint", Duration::from_secs(120), || {
        store.get(train).unwrap().state == JobState::Running
            && store.checkpoint(train).unwrap().is_some_and(|c| c.done > 0)
    });
    let mut first = first;
    // SIGKILL: no chance to checkpoint or clean up.
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    let at_kill = store.get(train).unwrap();
    assert_eq!(at_kill.state, JobState::Running, "{at_kill:?}");
    let cp_done = store.checkpoint(train).unwrap().unwrap().done;
    assert!(cp_done > 0);

    let mut second = serve(d, &free_addr());
    wait_until("every job to finish", Duration::from_secs(180), || {
        ids.iter()
            .all(|&id| store.get(id).unwrap().state.is_terminal())
    });
    for (id, args) in ids.iter().zip(JOBS) {
        let r = store.get(*id).unwrap();
        assert_eq!(r.state, JobState::Succeeded, "{r:?}");
        let digest = r.result_digest.clone().unwrap();
        assert_eq!(digest, reference_digest(args), "job {id} ({args:?})");
        // The result file is there and matches.
        let (_, stored) = store.result(*id).unwrap();
        assert_eq!(stored, digest);
        assert!(r.usage.gpu_seconds > 0.0 && r.usage.earned > 0.0, "{r:?}");
    }
    // The killed job resumed from its checkpoint, not from the start.
    let reasons: Vec<String> = store
        .transitions(train)
        .unwrap()
        .into_iter()
        .map(|t| t.reason)
        .collect();
    assert!(
        reasons.iter().any(|r| r == "recovered after restart"),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("resumed from its checkpoint at unit ") && !r.ends_with(" 0")),
        "{reasons:?}"
    );
    // SIGTERM stops it cleanly.
    sigterm(&second.0);
    let status = second.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
