//! Crash durability: a child process (this test binary, re-run with an env var) writes to the
//! store and reports each acknowledged write on stdout; the parent SIGKILLs it mid-stream and
//! checks that everything acknowledged survived.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{bits, spec, tricky_floats};
use hearth::gpu::job::Checkpoint;
use hearth::jobs::{JobId, JobState, JobStore, StoreLimits};

const DIR_VAR: &str = "HEARTH_JOBS_CRASH_CHILD_DIR";

fn limits() -> StoreLimits {
    StoreLimits {
        max_jobs_per_tenant: 1_000_000,
        max_total_input_bytes: u64::MAX,
    }
}

fn checkpoint() -> Checkpoint {
    Checkpoint {
        done: 41,
        state: vec![tricky_floats(), (0..1000).map(|i| i as f32 / 7.0).collect()],
    }
}

/// The child's body; a no-op when run as an ordinary test.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let store = JobStore::open(std::path::Path::new(&dir), limits()).unwrap();
    let mut out = std::io::stdout().lock();
    // libtest may have printed "test crash_child ... " without a newline: start a fresh line.
    writeln!(out).unwrap();
    let mut say = |line: String| {
        writeln!(out, "{line}").unwrap();
        out.flush().unwrap();
    };
    let mut ids = Vec::new();
    for i in 0..5 {
        let id = store.submit(&spec("crash", 8 + i)).unwrap();
        say(format!("ACK {}", id.0));
        ids.push(id);
    }
    store
        .transition(ids[1], JobState::Running, "leased")
        .unwrap();
    store.save_checkpoint(ids[1], &checkpoint()).unwrap();
    say(format!("RUNNING {}", ids[1].0));
    say("READY".into());
    // Keep writing until killed; bounded so an orphan cannot run forever.
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < Duration::from_secs(60) && n < 100_000 {
        let id = store.submit(&spec("crash", 1 + n % 50)).unwrap();
        say(format!("ACK {}", id.0));
        n += 1;
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(DIR_VAR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut acked = Vec::new();
    let mut running = None;
    let mut after_ready = None;
    // Read until READY plus 20 more acknowledged submissions, then kill mid-stream.
    for line in lines.by_ref() {
        let line = line.unwrap();
        let line = line.trim();
        if let Some(id) = line.strip_prefix("ACK ") {
            acked.push(JobId(id.parse().unwrap()));
            if let Some(k) = after_ready.as_mut() {
                *k += 1;
                if *k >= 20 {
                    break;
                }
            }
        } else if let Some(id) = line.strip_prefix("RUNNING ") {
            running = Some(JobId(id.parse().unwrap()));
        } else if line == "READY" {
            after_ready = Some(0);
        }
    }
    child.kill().unwrap(); // SIGKILL on Unix
                           // Lines already written before the kill were acknowledged too.
    for line in lines {
        let Ok(line) = line else { break };
        let line = line.trim();
        if let Some(id) = line.strip_prefix("ACK ") {
            acked.push(JobId(id.parse().unwrap()));
        }
    }
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(9),
        "child must die by SIGKILL, got {status}"
    );
    let running = running.expect("child reported its running job");
    assert!(acked.len() >= 25, "{} acks", acked.len());

    let store = JobStore::open(dir.path(), limits()).unwrap();
    for (i, id) in acked.iter().enumerate() {
        let rec = store
            .get(*id)
            .unwrap_or_else(|e| panic!("acked job {id} lost: {e}"));
        let want = if *id == running {
            JobState::Running
        } else {
            JobState::Queued
        };
        assert_eq!(rec.state, want, "job {id}");
        if i < 5 {
            let s = store.load_spec(*id).unwrap();
            assert_eq!(s, spec("crash", 8 + i));
        }
    }
    let cp = store
        .checkpoint(running)
        .unwrap()
        .expect("checkpoint survived");
    assert_eq!(cp.done, 41);
    assert_eq!(cp.state.len(), 2);
    for (a, b) in cp.state.iter().zip(&checkpoint().state) {
        assert_eq!(bits(a), bits(b));
    }

    let order = store.recover().unwrap();
    assert!(order.contains(&running));
    assert!(acked.iter().all(|id| order.contains(id)));
    let rec = store.get(running).unwrap();
    assert_eq!(rec.state, JobState::Queued);
    assert_eq!(rec.progress_units, 41);
    let t = store.transitions(running).unwrap();
    let last = t.last().unwrap();
    assert_eq!(
        (last.from, last.to, last.reason.as_str()),
        (
            Some(JobState::Running),
            JobState::Queued,
            "recovered after restart"
        )
    );
    // The re-queued job still has its checkpoint to resume from.
    assert_eq!(store.checkpoint(running).unwrap().unwrap().done, 41);
}
