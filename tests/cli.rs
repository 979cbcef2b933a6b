//! The `hearth` binary as a user runs it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

mod common;
use common::bin::{free_addr, hearth, json_of, ok, run_out, sha256_line};
use common::serve::{serve, sigterm, wait_exit, Daemon};

#[test]
fn serve_logs_budget_room_and_accepted_shares_and_stops_cleanly_on_sigterm() {
    let mut child = serve(
        "50",
        "127.0.0.1:0",
        &tempfile::tempdir().unwrap().keep(),
        &free_addr(),
    )
    .env("HEARTH_CONTROL__LOG_EVERY_TICKS", "1")
    // A cold room wants heat whatever the hour; an easy pool finds shares fast.
    .env("HEARTH_SIMULATION__INITIAL_CELSIUS", "15")
    .env("HEARTH_MINING__LOCAL_POOL__INITIAL_DIFFICULTY", "0.0005")
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Watchdog: a daemon that misbehaves is killed, so the test fails instead of hanging (and
    // never leaves an orphan hashing on the machine).
    let pid = child.id().to_string();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if done_rx
            .recv_timeout(std::time::Duration::from_secs(120))
            .is_err()
        {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
    });
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let (mut ticks, mut accepted) = (0, false);
    let mut seen = Vec::new();
    // Read log lines until ticks with a room reading and an accepted share have been logged.
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.contains(" tick ")
            && line.contains("budget_watts=")
            && !line.contains("room_celsius=-")
        {
            ticks += 1;
        }
        if line.contains(" mining ") && !line.contains("accepted=0 ") {
            accepted = true;
        }
        seen.push(line);
        if ticks >= 3 && accepted {
            break;
        }
    }
    assert!(
        ticks >= 3 && accepted,
        "no accepted share logged: {seen:#?}"
    );
    sigterm(&child);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    let _ = done_tx.send(());
    watchdog.join().unwrap();
    assert!(status.success(), "exit {status:?}; log {rest:#?}");
    assert!(
        rest.iter().any(|l| l.contains("heat budget 0 W")),
        "{rest:#?}"
    );
}

#[test]
fn print_default_is_a_valid_config() {
    let out = hearth().args(["config", "print-default"]).output().unwrap();
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hearth.toml");
    std::fs::write(&path, &out.stdout).unwrap();
    ok(&hearth()
        .args(["config", "check", "--config"])
        .arg(&path)
        .output()
        .unwrap());
}

#[test]
fn invalid_config_fails_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hearth.toml");
    std::fs::write(&path, "[heater]\nmax_watts = 10.0\nidle_watts = 50.0\n").unwrap();
    let out = hearth()
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("heater.max_watts"), "{err}");
    let out = hearth()
        .args(["config", "check"])
        .env("HEARTH_THERMOSTAT__PRESETS__COMFORT", "31")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("thermostat.presets.comfort"), "{err}");
}

#[test]
fn simulate_prints_json_kpis_for_both_controllers_and_plots() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("run.png");
    let v = json_of(
        hearth()
            .args([
                "simulate", "--hours", "24", "--json", "--set", "seed=3", "--plot",
            ])
            .arg(&png),
    );
    let names: Vec<&str> = v["controllers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hearth", "bang-bang"]);
    assert_eq!(v["scenario"]["hours"], 24.0);
    assert_eq!(v["scenario"]["seed"], 3);
    for c in v["controllers"].as_array().unwrap() {
        assert!(c["kpis"]["energy_kwh"].as_f64().unwrap() > 0.0);
    }
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
}

#[test]
fn simulate_rejects_bad_parameters_clearly() {
    let out = hearth().args(["simulate", "--r=-1"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--r"));
    let out = hearth()
        .args(["simulate", "--set", "room.bogus=1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bogus"));
    let out = hearth()
        .args(["simulate", "--plot", "x.gif"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(".svg or .png"));
}

/// A nested `--set` changes one key and keeps its section's other defaults (README shows
/// `--set outdoor.mean_celsius=-5`); a colder outdoor costs more energy.
#[test]
fn simulate_nested_set_merges_into_the_defaults() {
    let run = |extra: &[&str]| {
        json_of(
            hearth()
                .args(["simulate", "--hours", "6", "--json"])
                .args(extra),
        )
    };
    let mild = run(&[]);
    let cold = run(&["--set", "outdoor.mean_celsius=-5"]);
    let energy =
        |v: &serde_json::Value| v["controllers"][0]["kpis"]["energy_kwh"].as_f64().unwrap();
    assert!(energy(&cold) > energy(&mild), "{cold} vs {mild}");
    assert_eq!(cold["scenario"]["outdoor"]["mean_celsius"], -5.0);
    assert_eq!(cold["scenario"]["outdoor"]["kind"], "sine");
}

const GENESIS: &str = "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c";

fn scan_json(args: &[&str]) -> serde_json::Value {
    json_of(hearth().args(["mine", "scan", "--json"]).args(args))
}

#[test]
fn mine_scan_finds_the_genesis_nonce_at_the_headers_own_target() {
    let v = scan_json(&[
        "--header",
        GENESIS,
        "--start",
        "0x7c2b0000",
        "--count",
        "0x10000",
    ]);
    let found = v["found"].as_array().unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["nonce"], "7c2bac1d");
    assert_eq!(
        found[0]["hash"],
        "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"
    );
    assert!(found[0]["difficulty"].as_f64().unwrap() > 2536.0);
}

#[test]
fn mine_scan_with_every_kernel_and_an_explicit_difficulty() {
    // The header of the testnet Stratum round trip; its nonce is b2957c02.
    let header = "02000000f8b6164d19e2f65a2aae448f787fe66d61e57a48c0c6771b1e920b440000000032414daa9ddac879fd2c62839b9ba710a3546363a5f5e22915d90dc3b1699deced864e50afc42a1c00000000";
    for kernel in hearth::mining::sha256d::Kernel::supported() {
        let v = scan_json(&[
            "--header",
            header,
            "--start",
            "0xb2957000",
            "--count",
            "4096",
            "--difficulty",
            "1",
            "--kernel",
            kernel.name(),
        ]);
        let nonces: Vec<&str> = v["found"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["nonce"].as_str().unwrap())
            .collect();
        assert_eq!(nonces, ["b2957c02"], "{kernel:?}");
        assert_eq!(
            v["found"][0]["hash"],
            "000000002076870fe65a2b6eeed84fa892c0db924f1482243a6247d931dcab32"
        );
    }
}

#[test]
fn mine_scan_rejects_malformed_input_clearly() {
    for (args, expect) in [
        (vec!["--header", &GENESIS[..150]], "80 bytes"),
        (vec!["--header", "zz"], "not hex"),
        (vec!["--header", GENESIS, "--difficulty", "0"], "positive"),
        (vec!["--header", GENESIS, "--difficulty", "-2"], "positive"),
        (vec!["--header", GENESIS, "--target", "00ff"], "32 bytes"),
        (
            vec!["--header", GENESIS, "--start", "0xffffffff", "--count", "2"],
            "past",
        ),
    ] {
        let out = hearth()
            .args(["mine", "scan"])
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{args:?}: {err}");
    }
}

#[test]
fn bench_hash_reports_every_supported_kernel_beside_the_one_stream_limit() {
    use hearth::mining::sha256d::{CpuFeatures, Kernel};
    let v = json_of(hearth().args(["bench", "hash", "--seconds", "0.2", "--json"]));
    let rows = v["kernels"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["kernel"].as_str().unwrap()).collect();
    let expect: Vec<&str> = Kernel::supported().iter().map(|k| k.name()).collect();
    assert_eq!(names, expect);
    assert_eq!(rows[0]["kernel"], "portable");
    assert_eq!(rows[0]["ratio_to_portable"], 1.0);
    let limit = v["one_stream_limit_mhs"].as_f64().unwrap();
    assert!(limit > 0.0, "{v}");
    for r in rows {
        let mhs = r["mhs_per_thread"].as_f64().unwrap();
        assert!(mhs > 0.0, "{r}");
        let ratio = r["ratio_to_limit"].as_f64().unwrap();
        assert!((ratio - mhs / limit).abs() < 1e-9, "{r}");
    }
    assert!(expect.contains(&v["fastest"].as_str().unwrap()));
    let features: Vec<&str> = v["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(features, CpuFeatures::detect().names());
}

#[test]
fn gpu_info_names_the_adapter_and_says_software_or_hardware() {
    let info = json_of(hearth().args(["gpu", "info", "--json"]));
    assert!(!info["name"].as_str().unwrap().is_empty());
    // CI has only lavapipe.
    assert_eq!(info["software"], true, "{info}");
    assert!(info["max_storage_buffer_binding_size"].as_u64().unwrap() > 0);
}

#[test]
fn gpu_run_reads_and_writes_npy_and_checks_against_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("c.npy");
    let run = hearth()
        .args([
            "gpu", "run", "matmul", "--size", "5,7,3", "--check", "--output",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = ok(&run);
    assert!(stdout.contains("sha256: "), "{stdout}");
    let diff: f32 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("largest difference from the CPU reference: "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(diff < 1e-4, "{stdout}");
    let c = hearth::gpu::tensor::Tensor::from_npy(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(c.shape, vec![5, 3]);

    // The output fed back as input: softmax of C, row sums 1.
    let probs = dir.path().join("p.npy");
    ok(&hearth()
        .args(["gpu", "run", "softmax", "--input"])
        .arg(&out)
        .arg("--output")
        .arg(&probs)
        .output()
        .unwrap());
    let p = hearth::gpu::tensor::Tensor::from_npy(&std::fs::read(&probs).unwrap()).unwrap();
    for row in p.data.chunks(3) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
}

#[test]
fn gpu_run_rejects_invalid_wgsl_with_naga_s_message() {
    let dir = tempfile::tempdir().unwrap();
    let wgsl = dir.path().join("bad.wgsl");
    std::fs::write(
        &wgsl,
        "@compute @workgroup_size(1)\nfn main() { let x: f32 = 1u; }\n",
    )
    .unwrap();
    let x = dir.path().join("x.npy");
    let t = hearth::gpu::tensor::Tensor::new(vec![4], vec![1.0; 4]).unwrap();
    std::fs::write(&x, t.to_npy()).unwrap();
    let run = hearth()
        .args(["gpu", "run", "custom", "--outputs", "4", "--wgsl"])
        .arg(&wgsl)
        .arg("--input")
        .arg(&x)
        .output()
        .unwrap();
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("kernel.wgsl") && err.contains("wgsl:2:"),
        "{err}"
    );
    // A malformed .npy names the file.
    std::fs::write(&x, b"not npy").unwrap();
    let run = hearth()
        .args(["gpu", "run", "relu", "--input"])
        .arg(&x)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        !run.status.success() && err.contains("x.npy") && err.contains("magic"),
        "{err}"
    );
}

#[test]
fn the_readme_sample_config_is_valid() {
    let readme = include_str!("../README.md");
    let at = readme
        .find("A sample config")
        .expect("the README has a sample config");
    let start = readme[at..].find("```toml\n").unwrap() + at + 8;
    let end = readme[start..].find("```").unwrap() + start;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hearth.toml");
    std::fs::write(&path, &readme[start..end]).unwrap();
    let text = ok(&hearth()
        .args(["config", "check", "--config"])
        .arg(&path)
        .output()
        .unwrap());
    assert!(
        text.contains("w1_slave") && text.contains("/var/lib/hearth"),
        "{text}"
    );
}

/// The owner's CLI against a running daemon, checked on its `--json` output; a `status --watch`
/// stream open during SIGTERM does not hold the daemon up.
#[test]
fn cli_commands_drive_a_running_daemon_and_sigterm_ends_open_streams() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let url = format!("http://{addr}");
    let mut daemon = Daemon(
        serve("30", &addr, dir.path(), &free_addr())
            .env("HEARTH_MINING__ENABLED", "false")
            .env("HEARTH_GPU__ENABLED", "false")
            .spawn()
            .unwrap(),
    );
    let cli = |args: &[&str]| common::bin::client(args, &url, dir.path());
    // Wait until the API answers.
    let status = common::bin::json_when(|| cli(&["status", "--json"]), |_| true);
    assert!(status["budget_watts"].is_number() && status["power"].as_array().unwrap().len() == 3);
    let out = cli(&["mix", "pin", "--asic", "30", "--gpu", "70", "--json"]);
    let mix: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(
        (mix["mode"].as_str(), mix["gpu_percent"].as_f64()),
        (Some("pinned"), Some(70.0))
    );
    let out = cli(&["mix", "pin", "--asic", "30", "--gpu", "60"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines().count() == 1 && err.contains("mix.pinned"),
        "{err}"
    );
    let out = cli(&["setpoint", "22.5", "--json"]);
    let sp: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sp["setpoint_celsius"].as_f64(), Some(22.5));
    // The mix is in force from the next tick's snapshot on.
    let t0 = std::time::Instant::now();
    loop {
        let s: serde_json::Value =
            serde_json::from_slice(&cli(&["status", "--json"]).stdout).unwrap();
        if s["mix"]["gpu_percent"].as_f64() == Some(70.0) {
            break;
        }
        assert!(t0.elapsed().as_secs() < 10, "mix never shown: {}", s["mix"]);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // A watcher stays connected while the daemon stops.
    let mut watcher = hearth()
        .args(["status", "--watch", "--json", "--addr", &url, "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watcher.stdout.take().unwrap()).lines();
    for _ in 0..3 {
        let l = lines.next().unwrap().unwrap();
        assert!(serde_json::from_str::<serde_json::Value>(&l).unwrap()["tick"].is_u64());
    }
    sigterm(&daemon.0);
    let code = wait_exit(&mut daemon.0, "the daemon did not stop with a stream open");
    assert!(code.success(), "{code:?}");
    let _ = watcher.kill();
    let _ = watcher.wait();
    // No daemon: a one-line error that says how to start it.
    let out = cli(&["status"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("hearth serve") && err.lines().count() == 1,
        "{err}"
    );
}

/// `hearth jobs` is a gRPC client of the running daemon (software GPU): submit with flags and with
/// a job file, wait, list, get, result (digest checked), cancel, watch, a large input sent with
/// UploadTensor, and one-line errors.
#[test]
fn jobs_commands_are_a_grpc_client_of_the_running_daemon() {
    use hearth::gpu::tensor::Tensor;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let addr = free_addr();
    let url = format!("http://{addr}");
    let mut daemon = Daemon(
        serve("20", &addr, &data, &free_addr())
            // A cold room: the budget is high; only the GPU and the element take it.
            .env("HEARTH_SIMULATION__INITIAL_CELSIUS", "15")
            .env("HEARTH_MINING__ENABLED", "false")
            .env("HEARTH_GPU__ADAPTER", "software")
            .spawn()
            .unwrap(),
    );
    let jobs = |args: &[&str]| {
        run_out(
            hearth()
                .arg("jobs")
                .args(args)
                .args(["--addr", &url, "--data-dir"])
                .arg(&data),
        )
    };
    let ok_json = |args: &[&str]| -> serde_json::Value {
        let (ok, out, err) = jobs(args);
        assert!(ok, "{args:?}: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    };
    let t0 = std::time::Instant::now();
    while !jobs(&["list", "--json"]).0 {
        assert!(t0.elapsed().as_secs() < 60, "the API never answered");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // The same .npy inputs for the daemon and for a local `hearth gpu run`.
    let a = dir.path().join("a.npy");
    let b = dir.path().join("b.npy");
    let ta = Tensor::new(
        vec![24, 16],
        (0..384)
            .map(|i| ((i * 7) % 13) as f32 * 0.25 - 1.5)
            .collect(),
    )
    .unwrap();
    let tb = Tensor::new(
        vec![16, 20],
        (0..320)
            .map(|i| ((i * 5) % 11) as f32 * 0.5 - 2.0)
            .collect(),
    )
    .unwrap();
    std::fs::write(&a, ta.to_npy()).unwrap();
    std::fs::write(&b, tb.to_npy()).unwrap();
    let (a_s, b_s) = (a.to_str().unwrap(), b.to_str().unwrap());
    let (ok, out, err) = run_out(hearth().args([
        "gpu",
        "run",
        "matmul",
        "--input",
        a_s,
        "--input",
        b_s,
        "--adapter",
        "software",
    ]));
    assert!(ok, "{err}");
    let want = sha256_line(&out);

    // Submit and wait: the final job as JSON, with the local run's digest.
    let j = ok_json(&[
        "submit", "matmul", "--input", a_s, "--input", b_s, "--price", "0.001", "--wait", "--json",
    ]);
    assert_eq!(j["state"], "SUCCEEDED", "{j}");
    assert_eq!(j["result_digest"].as_str(), Some(want.as_str()), "{j}");
    assert_eq!(
        (j["kernel"].as_str(), j["tenant"].as_str()),
        (Some("matmul"), Some("owner"))
    );
    assert!(j["gpu_seconds"].as_f64().unwrap() > 0.0, "{j}");
    let id = j["id"].as_u64().unwrap();
    assert_eq!(j["name"], format!("jobs/{id}"));

    // get, by either form of the id.
    for form in [id.to_string(), format!("jobs/{id}")] {
        let g = ok_json(&["get", &form, "--json"]);
        assert_eq!(
            (g["id"].as_u64(), &g["result_digest"]),
            (Some(id), &j["result_digest"])
        );
    }
    let (ok, out, _) = jobs(&["get", &id.to_string()]);
    assert!(
        ok && out.contains("SUCCEEDED") && sha256_line(&out) == want,
        "{out}"
    );

    // result: the outputs as .npy; the printed digest is the job's.
    let res = dir.path().join("results");
    let (ok, out, err) = jobs(&["result", &id.to_string(), "--out", res.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(sha256_line(&out), want);
    let c = Tensor::from_npy(&std::fs::read(res.join(format!("job-{id}.npy"))).unwrap()).unwrap();
    assert_eq!(c.shape, vec![24, 20]);
    assert_eq!(hearth::gpu::tensor::digest(&[c]), want);

    // A job file with the same inputs, relative to the file, and a lease.
    let spec = dir.path().join("job.toml");
    std::fs::write(
        &spec,
        "kernel = \"matmul\"\ninputs = [\"a.npy\", \"b.npy\"]\ntenant = \"acme\"\nprice = 0.002\npriority = 3\n",
    )
    .unwrap();
    let s = ok_json(&[
        "submit",
        "--spec",
        spec.to_str().unwrap(),
        "--wait",
        "--json",
    ]);
    assert_eq!(s["state"], "SUCCEEDED", "{s}");
    assert_eq!(s["result_digest"].as_str(), Some(want.as_str()));
    assert_eq!(
        (s["tenant"].as_str(), s["priority"].as_i64()),
        (Some("acme"), Some(3))
    );
    // A bad key in the file: a one-line error naming it, before the network.
    std::fs::write(&spec, "[kernel]\ntype = \"mlp_train\"\nlrr = 0.1\n").unwrap();
    let (ok, _, err) = jobs(&["submit", "--spec", spec.to_str().unwrap()]);
    assert!(
        !ok && err.lines().count() == 1 && err.contains("kernel.lrr"),
        "{err}"
    );

    // An input over the 4 MiB inline limit goes up with UploadTensor; its result comes back in
    // several chunks. relu is exact, so the digest is known.
    let big = Tensor::new(
        vec![1_100_000],
        (0..1_100_000).map(|i| (i % 17) as f32 - 8.0).collect(),
    )
    .unwrap();
    let relu = Tensor::new(
        big.shape.clone(),
        big.data.iter().map(|v| v.max(0.0)).collect(),
    )
    .unwrap();
    let big_path = dir.path().join("big.npy");
    std::fs::write(&big_path, big.to_npy()).unwrap();
    let r = ok_json(&[
        "submit",
        "relu",
        "--input",
        big_path.to_str().unwrap(),
        "--wait",
        "--json",
    ]);
    assert_eq!(r["state"], "SUCCEEDED", "{r}");
    let relu_digest = hearth::gpu::tensor::digest(std::slice::from_ref(&relu));
    assert_eq!(r["result_digest"].as_str(), Some(relu_digest.as_str()));
    let rid = r["id"].as_u64().unwrap().to_string();
    let (ok, out, err) = jobs(&["result", &rid, "--out", res.to_str().unwrap()]);
    assert!(ok && sha256_line(&out) == relu_digest, "{out}{err}");
    let back =
        Tensor::from_npy(&std::fs::read(res.join(format!("job-{rid}.npy"))).unwrap()).unwrap();
    assert_eq!(back, relu);

    // A local mistake fails before the network, on one line.
    let (ok, _, err) = jobs(&["submit", "matmul", "--input", a_s, "--input", a_s]);
    assert!(!ok && err.lines().count() == 1, "{err}");

    // Cancel a job queued behind a long one; watching it then fails with one line.
    let long = ok_json(&[
        "submit",
        "mlp_train",
        "--size",
        "4096,32,64,4",
        "--epochs",
        "400",
        "--json",
    ]);
    let queued = ok_json(&["submit", "matmul", "--size", "8,8,8", "--json"]);
    let qid = queued["id"].as_u64().unwrap().to_string();
    let c = ok_json(&["cancel", &qid, "--json"]);
    assert_eq!(c["state"], "CANCELLED", "{c}");
    // get shows the recorded history, with who cancelled it.
    let g = ok_json(&["get", &qid, "--json"]);
    let last = g["history"].as_array().unwrap().last().unwrap().clone();
    assert!(last["from"].is_string() && last["to"] == "CANCELLED", "{g}");
    assert!(
        last["reason"]
            .as_str()
            .unwrap()
            .starts_with("cancelled by token"),
        "{g}"
    );
    assert_eq!(g["history"][0]["from"], serde_json::Value::Null, "{g}");
    let (ok, out, _) = jobs(&["get", &qid]);
    assert!(ok && out.contains("-> CANCELLED"), "{out}");
    let (ok, out, err) = jobs(&["watch", &qid, "--json"]);
    assert!(
        !ok && err.lines().count() == 1 && err.contains("CANCELLED"),
        "{err}"
    );
    let w: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(w["state"], "CANCELLED");
    let (ok, _, err) = jobs(&["cancel", &long["id"].as_u64().unwrap().to_string()]);
    assert!(ok, "{err}");

    // list pages through every job; --state filters.
    let (ok, out, err) = jobs(&["list", "--json"]);
    assert!(ok, "{err}");
    let all: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<u64> = all.iter().map(|j| j["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, (1..=5).collect::<Vec<u64>>(), "{out}");
    assert_eq!(all[0]["result_digest"].as_str(), Some(want.as_str()));
    let (ok, out, _) = jobs(&["list", "--state", "cancelled", "--json"]);
    assert!(ok);
    let cancelled: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(cancelled.iter().all(|j| j["state"] == "CANCELLED"), "{out}");
    assert!(cancelled.iter().any(|j| j["id"] == queued["id"]), "{out}");
    let (ok, out, _) = jobs(&["list"]);
    assert!(
        ok && out.lines().count() == 6 && out.contains("acme"),
        "{out}"
    );

    // A job that does not exist: a one-line NotFound.
    let (ok, _, err) = jobs(&["get", "999999"]);
    assert!(
        !ok && err.lines().count() == 1 && err.contains("NotFound") && err.contains("jobs/999999"),
        "{err}"
    );
    // No daemon at the address: a one-line error that says how to start it.
    let (ok, _, err) = run_out(
        hearth()
            .args([
                "jobs",
                "list",
                "--addr",
                &format!("http://{}", free_addr()),
                "--data-dir",
            ])
            .arg(&data),
    );
    assert!(
        !ok && err.lines().count() == 1 && err.contains("hearth serve"),
        "{err}"
    );
    // SIGTERM stops the daemon cleanly.
    sigterm(&daemon.0);
    let code = wait_exit(&mut daemon.0, "the daemon did not stop");
    assert!(code.success(), "{code:?}");
}

#[test]
fn bench_api_reports_both_loads_and_every_acknowledged_submit_survives_kill_9() {
    for sync in ["normal", "full"] {
        let v = json_of(hearth().args([
            "bench",
            "api",
            "--clients",
            "4",
            "--jobs",
            "150",
            "--sync",
            sync,
            "--json",
        ]));
        assert_eq!(v["submit"]["calls"], 150, "{v}");
        assert_eq!(v["health"]["calls"], 150, "{v}");
        // The bench itself fails unless the store holds every acknowledged job after SIGKILL.
        assert_eq!(v["found_after_kill"], 150, "{v}");
        assert_eq!(v["sync"], sync, "{v}");
        let ratio = v["ratio"].as_f64().unwrap();
        let expect = v["submit"]["per_second"].as_f64().unwrap()
            / v["health"]["per_second"].as_f64().unwrap();
        assert!((ratio - expect).abs() < 1e-9, "{v}");
        assert!(v["submit"]["p50_ms"].as_f64().unwrap() <= v["submit"]["p99_ms"].as_f64().unwrap());
        assert!(v["rss_peak_mib"].as_f64().unwrap() > 0.0, "{v}");
    }
}
