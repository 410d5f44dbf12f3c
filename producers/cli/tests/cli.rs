//! The `watchtrain` binary against the real relay binary on a loopback port,
//! with log files appended to by other processes, rotated and truncated.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn cli() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_watchtrain"))
}

/// The relay binary: $WATCHTRAIN_RELAY_BIN, else beside ours in the target folder (built here when missing).
fn relay_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("WATCHTRAIN_RELAY_BIN") {
        return PathBuf::from(path);
    }
    let path = cli().with_file_name("watchtrain-relay");
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-q", "-p", "watchtrain-relay"])
            .status()
            .expect("cargo build");
        assert!(status.success());
    }
    path
}

struct Relay {
    /// `0` until the first start, then the port the relay chose (a restart binds it again).
    port: u16,
    db: PathBuf,
    /// The relay's stderr, kept for the failure message.
    log: PathBuf,
    child: Option<Child>,
    /// Extra flags (TLS, tokens).
    args: Vec<String>,
}

impl Relay {
    fn new(dir: &Path) -> Relay {
        Relay {
            port: 0,
            db: dir.join("relay.sqlite3"),
            log: dir.join("relay.log"),
            child: None,
            args: Vec::new(),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What the relay wrote on stderr so far.
    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Starts the relay on port 0 (the first time) and reads its address from its first line.
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut child = Command::new(relay_binary())
            .args(["--listen", &format!("127.0.0.1:{}", self.port), "--db"])
            .arg(&self.db)
            .args(&self.args)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("relay starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the first line, then keeps reading so the relay never blocks on its stdout.
        std::thread::spawn(move || {
            let _ = tx.send(lines.next());
            for _ in lines {}
        });
        let first = rx.recv_timeout(Duration::from_secs(30));
        let Ok(Some(Ok(first))) = first else {
            let _ = child.kill();
            panic!(
                "the relay printed no address; its stderr:\n{}",
                self.stderr()
            );
        };
        let addr: SocketAddr = first
            .strip_prefix("watchtrain-relay listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "unexpected first line {first:?}; stderr:\n{}",
                    self.stderr()
                )
            });
        self.port = addr.port();
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn json(&self, path: &str) -> Option<Value> {
        serde_json::from_str(&http_get(self.port, path)?).ok()
    }

    fn training(&self, name: &str) -> Option<Value> {
        let list = self.json("/v1/trainings")?;
        list.as_array()?.iter().find(|t| t["name"] == name).cloned()
    }

    /// The stored stats rows: (epoch, values).
    fn history(&self, id: u64) -> Vec<(u32, Vec<f64>)> {
        let text =
            http_get(self.port, &format!("/v1/trainings/{id}/history.csv")).unwrap_or_default();
        text.lines()
            .skip(1)
            .map(|line| {
                let cells: Vec<&str> = line.split(',').collect();
                (
                    cells[0].parse().unwrap(),
                    cells[2..]
                        .iter()
                        .map(|c| c.parse().unwrap_or(f64::NAN))
                        .collect(),
                )
            })
            .collect()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.kill();
    }
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let ok = head.split(' ').nth(1) == Some("200");
    ok.then(|| body.to_string())
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

/// A loopback address where nothing listens: a relay's, after a `kill -9`.
fn dead_relay_url(dir: &Path) -> String {
    let mut relay = Relay::new(dir);
    relay.start();
    relay.kill();
    relay.url()
}

/// Appends `text` to `file` from another process, as a training would.
fn append(file: &Path, text: &str) {
    let status = Command::new("sh")
        .args(["-c", "printf '%s' \"$1\" >> \"$2\"", "sh", text])
        .arg(file)
        .status()
        .unwrap();
    assert!(status.success());
}

fn row(epoch: u32) -> String {
    let e = epoch as f64;
    format!(
        "{epoch},{},{},{},00:0{}\n",
        1.0 / (e + 1.0),
        1.5 / (e + 1.0),
        0.5 + e / 20.0,
        epoch % 10
    )
}

fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the child did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn tail_follows_appends_rotation_truncation_and_a_relay_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = Relay::new(dir.path());
    relay.start();
    let log = dir.path().join("history.csv");
    append(&log, "epoch,train_loss,valid_loss,accuracy,time\n");
    let mut tail = Command::new(cli())
        .args([
            "tail",
            "--name",
            "tailed",
            "--epochs",
            "10",
            "--poll-ms",
            "50",
            "--url",
            &relay.url(),
        ])
        .arg(&log)
        .stderr(std::fs::File::create(dir.path().join("tail.err")).unwrap())
        .spawn()
        .unwrap();
    let stored = |relay: &Relay, n: usize| {
        relay
            .training("tailed")
            .is_some_and(|t| relay.history(t["id"].as_u64().unwrap()).len() == n)
    };
    for epoch in 0..3 {
        append(&log, &row(epoch));
        wait_for("epoch stored", || stored(&relay, epoch as usize + 1));
    }
    // Rotation: the log is renamed away and a new one (with its header) takes its place.
    std::fs::rename(&log, dir.path().join("history.csv.1")).unwrap();
    append(
        &log,
        &format!("epoch,train_loss,valid_loss,accuracy,time\n{}", row(3)),
    );
    wait_for("epoch 3 after rotation", || stored(&relay, 4));
    // Truncation in place (copytruncate).
    std::fs::write(&log, "").unwrap();
    append(
        &log,
        &format!("epoch,train_loss,valid_loss,accuracy,time\n{}", row(4)),
    );
    wait_for("epoch 4 after truncation", || stored(&relay, 5));
    // The relay dies (kill -9) and comes back; the log goes on meanwhile.
    relay.kill();
    append(&log, &row(5));
    append(&log, &row(6));
    std::thread::sleep(Duration::from_millis(300));
    relay.start();
    for epoch in 7..10 {
        append(&log, &row(epoch));
    }
    let status = wait_exit(&mut tail, Duration::from_secs(30));
    let said = std::fs::read_to_string(dir.path().join("tail.err")).unwrap();
    assert!(status.success(), "{said}");
    // Progress as it goes: the connection, each epoch read, the relay's absence, the end.
    assert!(said.contains("connected: training"), "{said}");
    assert!(said.contains("epoch 9: train_loss=0.1000"), "{said}");
    assert!(said.contains("frame(s), retrying"), "{said}");
    assert!(said.contains("finished: training"), "{said}");
    let training = relay.training("tailed").unwrap();
    assert_eq!(training["status"], "completed");
    let id = training["id"].as_u64().unwrap();
    let state = relay.json(&format!("/v1/trainings/{id}")).unwrap();
    assert_eq!(
        state["metrics"],
        serde_json::json!(["train_loss", "valid_loss", "accuracy"])
    );
    let history = relay.history(id);
    assert_eq!(
        history.iter().map(|r| r.0).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>(),
        "every epoch once"
    );
    for (epoch, values) in history {
        let e = epoch as f64;
        let want = [1.0 / (e + 1.0), 1.5 / (e + 1.0), 0.5 + e / 20.0];
        for (v, w) in values.iter().zip(want) {
            assert!((v - w).abs() < 1e-6, "epoch {epoch}: {values:?}");
        }
    }
}

#[test]
fn tail_merges_lightning_rows_and_reads_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = Relay::new(dir.path());
    relay.start();
    // Lightning's CSVLogger: step rows, then the epoch's train and validation values on separate rows.
    let lightning = dir.path().join("metrics.csv");
    append(
        &lightning,
        "epoch,step,train_loss_epoch,train_loss_step,val_loss\n\
         0,9,,0.9,\n0,15,,,0.8\n0,15,0.85,,\n1,19,,0.5,\n1,31,,,0.45\n1,31,0.5,,\n",
    );
    let jsonl = dir.path().join("log.jsonl");
    // Python's json.dumps writes a NaN loss as a bare NaN: it must reach the relay, not be dropped.
    append(&jsonl, "{\"epoch\": 0, \"loss\": 1.5, \"acc\": 0.25}\n{\"epoch\": 1, \"loss\": \"NaN\", \"acc\": 0.5}\n{\"epoch\": 2, \"loss\": NaN, \"acc\": Infinity}\n");
    for (file, name) in [(&lightning, "lightning"), (&jsonl, "jsonl")] {
        let out = Command::new(cli())
            .args([
                "tail",
                "--name",
                name,
                "--idle-finish",
                "0.5",
                "--poll-ms",
                "50",
                "--url",
                &relay.url(),
            ])
            .arg(file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let t = relay.training("lightning").unwrap();
    assert_eq!(t["status"], "completed");
    let state = relay.json(&format!("/v1/trainings/{}", t["id"])).unwrap();
    assert_eq!(
        state["metrics"],
        serde_json::json!(["train_loss_epoch", "val_loss"])
    );
    let latest = relay
        .history(t["id"].as_u64().unwrap())
        .into_iter()
        .map(|r| (r.0, r.1))
        .collect::<Vec<_>>();
    let last = latest.iter().rev().find(|r| r.0 == 1).unwrap();
    assert_eq!(last.1, vec![0.5, 0.45]);
    let t = relay.training("jsonl").unwrap();
    let state = relay.json(&format!("/v1/trainings/{}", t["id"])).unwrap();
    assert_eq!(state["metrics"], serde_json::json!(["acc", "loss"]));
    let history = relay.history(t["id"].as_u64().unwrap());
    assert_eq!(history[0], (0, vec![0.25, 1.5]));
    assert_eq!(history[1].1[0], 0.5);
    assert!(history[1].1[1].is_nan());
    assert_eq!(history.len(), 3, "the bare-NaN row too: {history:?}");
    assert_eq!(history[2].1[0], f64::INFINITY);
    assert!(history[2].1[1].is_nan());
}

fn send(relay: &Relay, args: &[&str]) -> Output {
    Command::new(cli())
        .arg("send")
        .args(args)
        .env("WATCHTRAIN_URL", relay.url())
        .env("WATCHTRAIN_NAME", "shell job")
        .env("WATCHTRAIN_METRICS", "loss,accuracy")
        .env("WATCHTRAIN_EPOCHS", "3")
        .output()
        .unwrap()
}

#[test]
fn send_and_watch() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = Relay::new(dir.path());
    relay.start();
    let mut ids = Vec::new();
    for args in [
        vec!["register"],
        vec![
            "stats",
            "--epoch",
            "0",
            "--duration",
            "2",
            "loss=0.9",
            "accuracy=0.5",
        ],
        vec![
            "stats",
            "--epoch",
            "1",
            "--duration",
            "2",
            "loss=0.6",
            "accuracy=0.7",
        ],
        vec![
            "progress",
            "--epoch",
            "2",
            "--batch",
            "5",
            "--batches",
            "10",
        ],
        vec!["log", "--level", "warn", "almost there"],
    ] {
        let out = send(&relay, &args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ids.push(String::from_utf8(out.stdout).unwrap().trim().to_string());
    }
    assert!(
        ids.iter().all(|id| id == &ids[0]),
        "every call lands on one training: {ids:?}"
    );
    let id: u32 = ids[0].parse().unwrap();

    let watch = Command::new(cli())
        .args(["watch", &id.to_string(), "--once", "--url", &relay.url()])
        .env_remove("COLUMNS")
        .output()
        .unwrap();
    assert!(
        watch.status.success(),
        "{}",
        String::from_utf8_lossy(&watch.stderr)
    );
    let view = String::from_utf8(watch.stdout).unwrap();
    assert!(view.contains("shell job · running · epoch 3/3"), "{view}");
    assert!(view.contains("train [##########"), "{view}");
    assert!(view.contains("5/10"), "{view}");
    assert!(view.contains("loss"), "{view}");
    assert!(view.contains("▁"), "a sparkline: {view}");
    // Not a terminal: COLUMNS sets the width (a terminal's own width is asked each draw).
    let narrow = Command::new(cli())
        .args(["watch", &id.to_string(), "--once", "--url", &relay.url()])
        .env("COLUMNS", "40")
        .output()
        .unwrap();
    let narrow = String::from_utf8(narrow.stdout).unwrap();
    assert!(
        narrow.contains(&format!("train [{}]", "#".repeat(10) + &".".repeat(10))),
        "{narrow}"
    );
    assert!(
        view.contains(&format!("train [{}]", "#".repeat(20) + &".".repeat(20))),
        "{view}"
    );

    // A watcher that stays until the training finishes, across a relay restart.
    let mut watcher = Command::new(cli())
        .args([
            "watch",
            &id.to_string(),
            "--until-finished",
            "--no-clear",
            "--url",
            &relay.url(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let state = relay.json(&format!("/v1/trainings/{id}")).unwrap();
    assert_eq!(
        state["last_seq"], 3,
        "2 stats and the log, numbered across calls"
    );
    // The relay restarts under the watcher, which reconnects.
    relay.kill();
    relay.start();
    let out = send(
        &relay,
        &["stats", "--epoch", "2", "loss=0.4", "accuracy=0.8"],
    );
    assert!(out.status.success());
    let out = send(&relay, &["finish"]);
    assert!(out.status.success());
    assert!(wait_exit(&mut watcher, Duration::from_secs(10)).success());
    // Stats after the finish would reopen the training: refused, and it stays completed.
    let out = send(&relay, &["stats", "--epoch", "3", "loss=0.3"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("has finished (completed)"), "{stderr}");
    let mut text = String::new();
    watcher
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert!(text.contains("completed"), "{text}");

    let state = relay.json(&format!("/v1/trainings/{id}")).unwrap();
    assert_eq!(state["status"], "completed");
    // The restarted relay knows the stored stats (seq 2), and the log line's seq 3 when it had
    // stored the training's row since (timing): the CLI continues after whichever it says.
    let last = state["last_seq"].as_u64().unwrap();
    assert!(
        last == 4 || last == 5,
        "after the restart: 2 stored stats (and maybe the log), 1 stats, the finish: {last}"
    );
    assert_eq!(relay.history(id.into()).len(), 3);
}

#[test]
fn send_fails_cleanly_without_a_relay() {
    let dir = tempfile::tempdir().unwrap();
    let url = dead_relay_url(dir.path());
    let started = Instant::now();
    let out = Command::new(cli())
        .args(["--timeout", "1", "send", "--name", "x", "log", "hello"])
        .env("WATCHTRAIN_URL", url)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("unreachable"), "{stderr}");
    // --timeout is the whole wait (it used to be a fixed 10 s); the bound only guards against that.
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn send_and_watch_over_tls_with_the_relays_own_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    let made = made.expect(
        "openssl makes the test certificate (apt-get install openssl; the test suites install it)",
    );
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let mut relay = Relay::new(dir.path());
    relay.args = vec![
        "--tls-cert".into(),
        cert.display().to_string(),
        "--tls-key".into(),
        key.display().to_string(),
    ];
    relay.start();
    let url = format!("https://127.0.0.1:{}", relay.port);
    let send = |ca: Option<&Path>, args: &[&str]| {
        let mut command = Command::new(cli());
        command.args(["--url", &url, "--timeout", "2"]);
        if let Some(ca) = ca {
            command.arg("--ca").arg(ca);
        }
        command
            .args(["send", "--name", "tls job", "--metrics", "loss"])
            .args(args);
        command
            .env_remove("WATCHTRAIN_CA")
            .env_remove("SSL_CERT_FILE")
            .output()
            .unwrap()
    };
    let refused = send(None, &["log", "hello"]);
    assert!(
        !refused.status.success(),
        "a certificate nobody trusts must be refused"
    );
    for args in [&["stats", "--epoch", "0", "loss=0.5"][..], &["finish"]] {
        let out = send(Some(&cert), args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let watch = Command::new(cli())
        .args(["--url", &url, "--ca"])
        .arg(&cert)
        .args(["watch", "--once"])
        .output()
        .unwrap();
    let view = String::from_utf8_lossy(&watch.stdout);
    assert!(
        watch.status.success(),
        "{}",
        String::from_utf8_lossy(&watch.stderr)
    );
    assert!(view.contains("tls job · completed"), "{view}");
    assert!(view.contains("0.5000"), "{view}");
}

fn cli_output(args: &[&str]) -> Output {
    Command::new(cli())
        .args(args)
        .env_remove("WATCHTRAIN_URL")
        .env_remove("WATCHTRAIN_TOKEN")
        .output()
        .unwrap()
}

#[test]
fn a_refused_token_is_said_once_with_the_relays_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = Relay::new(dir.path());
    relay.args = ["--token", "s3cret", "--consumer-token", "look"]
        .map(String::from)
        .to_vec();
    relay.start();
    let url = relay.url();
    for (token, reason) in [
        (None, "this relay needs a token"),
        (Some("wrong"), "wrong token"),
        (Some("look"), "a consumer token cannot publish"),
    ] {
        let mut args = vec!["--url", &url, "--timeout", "20"];
        if let Some(token) = token {
            args.extend(["--token", token]);
        }
        args.extend(["send", "--name", "refused", "log", "hello"]);
        let started = Instant::now();
        let out = cli_output(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{token:?}: {stderr}");
        assert_eq!(stderr.matches(reason).count(), 1, "{token:?}: {stderr}");
        // A refusal is final: no retrying until --timeout (20 s) runs out.
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{token:?} retried"
        );
        // tail says it once too, and stops instead of retrying forever.
        let log = dir.path().join("refused.csv");
        std::fs::write(&log, "epoch,loss\n0,1.0\n").unwrap();
        let mut args = vec!["--url", &url];
        if let Some(token) = token {
            args.extend(["--token", token]);
        }
        let log_arg = log.display().to_string();
        args.extend(["tail", "--poll-ms", "50", &log_arg]);
        let mut tail = Command::new(cli())
            .args(&args)
            .env_remove("WATCHTRAIN_TOKEN")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait_exit(&mut tail, Duration::from_secs(30));
        let mut stderr = String::new();
        tail.stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert_eq!(status.code(), Some(4), "{stderr}");
        assert_eq!(stderr.matches(reason).count(), 1, "{stderr}");
    }
    assert!(relay.training("refused").is_none());
    let ok = cli_output(&[
        "--url", &url, "--token", "s3cret", "send", "--name", "refused", "log", "hi",
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[test]
fn a_malformed_url_is_a_usage_error_at_once() {
    for url in [
        "mnist",
        "ftp://relay:21",
        "http://",
        "http://127.0.0.1:99999",
        "http://[::1",
    ] {
        let out = cli_output(&["--url", url, "--timeout", "30", "send", "log", "x"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{url}: {stderr}");
        assert!(stderr.contains("bad relay URL"), "{url}: {stderr}");
    }
}

#[test]
fn watch_once_on_an_empty_relay_says_so_and_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = Relay::new(dir.path());
    relay.start();
    let out = cli_output(&["--url", &relay.url(), "--timeout", "1", "watch", "--once"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no training"), "{stderr}");

    let sent = cli_output(&["--url", &relay.url(), "send", "--name", "piped", "log", "x"]);
    assert!(sent.status.success());
    // `watch --once | head -0`: the reader is gone before the view is written.
    let mut watch = Command::new(cli())
        .args(["--url", &relay.url(), "watch", "--once"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(watch.stdout.take());
    let status = wait_exit(&mut watch, Duration::from_secs(30));
    let mut stderr = String::new();
    watch
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{stderr}");
    assert_eq!(stderr, "");
}

#[test]
fn tail_waits_for_a_missing_file_without_registering() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = Relay::new(dir.path());
    relay.start();
    let log = dir.path().join("later.csv");
    let err = dir.path().join("tail.err");
    let mut tail = Command::new(cli())
        .args([
            "--url",
            &relay.url(),
            "tail",
            "--name",
            "later",
            "--epochs",
            "1",
            "--poll-ms",
            "50",
        ])
        .arg(&log)
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    wait_for("the waiting line", || {
        std::fs::read_to_string(&err)
            .unwrap_or_default()
            .contains("waiting for")
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        relay.training("later").is_none(),
        "registered before the log exists"
    );
    append(&log, "epoch,loss\n0,0.5\n");
    assert!(wait_exit(&mut tail, Duration::from_secs(30)).success());
    assert_eq!(relay.training("later").unwrap()["status"], "completed");
}

/// A peer that completes the WebSocket handshake, acknowledges the registration,
/// reads every frame and answers the close, but never acknowledges a frame: it
/// stands for a relay that lost them before storing them.
fn relay_that_never_acknowledges() -> (String, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let thread = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut ws = tungstenite::accept(stream).unwrap();
        let ack = watchtrain_protocol::Frame {
            training_id: 7,
            seq: 0,
            action: watchtrain_protocol::Action::Ack(watchtrain_protocol::Ack { seq: 0 }),
        };
        let mut answered = false;
        while let Ok(message) = ws.read() {
            if !answered {
                ws.send(tungstenite::Message::binary(
                    ack.to_bytes().unwrap().to_vec(),
                ))
                .unwrap();
                answered = true;
            }
            if message.is_close() {
                let _ = ws.flush();
            }
        }
    });
    (url, thread)
}

#[test]
fn a_frame_is_delivered_only_when_acknowledged() {
    let (url, peer) = relay_that_never_acknowledges();
    let out = cli_output(&[
        "--url",
        &url,
        "--timeout",
        "1",
        "send",
        "--name",
        "lost",
        "log",
        "x",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("not acknowledged"), "{stderr}");
    peer.join().unwrap();
}

#[test]
fn watch_in_a_terminal_redraws_in_place_at_its_width() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = Relay::new(dir.path());
    relay.start();
    let url = relay.url();
    for args in [
        &["send", "--name", "tty", "--metrics", "loss", "register"][..],
        &["send", "--name", "tty", "stats", "--epoch", "0", "loss=0.5"],
        &["send", "--name", "tty", "finish"],
    ] {
        let out = cli_output(&[&["--url", &url][..], args].concat());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let id = relay.training("tty").unwrap()["id"].to_string();
    // A real pseudo-terminal 50 columns wide (script(1), from bsdutils, essential in Debian).
    let command = format!(
        "stty cols 50 rows 20; '{}' --url {url} watch {id} --until-finished",
        cli().display()
    );
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .env("COLUMNS", "200") // the terminal's own width wins
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("\x1b[H") && text.contains("\x1b[K"),
        "{text:?}"
    );
    assert!(!text.contains("\x1b[2J"), "no whole-screen clear: {text:?}");
    assert!(
        text.contains(&format!("valid [{}]", ".".repeat(30))),
        "{text:?}"
    );
}

#[test]
fn goals_reach_the_relay_and_watch_shows_a_best_only_for_metrics_with_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = Relay::new(dir.path());
    relay.start();
    let run = |args: &[&str]| {
        Command::new(cli())
            .args(["--url", &relay.url(), "send", "--name", "goals"])
            .args(["--metrics", "loss,lr,score"])
            .args(args)
            .output()
            .unwrap()
    };
    // `score` has no goal by its name: declared maximized; `lr` none, as by its name.
    let out = run(&["--goal", "score=max", "--goal", "lr=none", "register"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    // Later calls declare nothing: the relay keeps the declared goals.
    for (epoch, values) in [
        ("0", ["loss=0.9", "lr=0.1", "score=1"]),
        ("1", ["loss=0.5", "lr=0.01", "score=3"]),
    ] {
        let mut args = vec!["stats", "--epoch", epoch];
        args.extend(values);
        let out = run(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let state = relay.json(&format!("/v1/trainings/{id}")).unwrap();
    assert_eq!(
        state["goals"],
        serde_json::json!(["min", "none", "max"]),
        "{state}"
    );
    assert!(state["best"][1].is_null(), "{state}");
    assert_eq!(state["best"][2]["value"], 3.0, "{state}");

    let watch = cli_output(&["--url", &relay.url(), "watch", &id, "--once"]);
    let view = String::from_utf8(watch.stdout).unwrap();
    let line = |name: &str| {
        view.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in {view}"))
            .to_string()
    };
    assert!(line("loss").contains("best 0.5000 (e2)"), "{view}");
    assert!(line("score").contains("best 3.000 (e2)"), "{view}");
    assert!(!line("lr").contains("best"), "{view}");

    // A goal that is not min, max or none, or of an unknown metric, is a usage error.
    for bad in ["score=up", "nope=max"] {
        let out = run(&["--goal", bad, "register"]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{bad}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
