//! `--notify` against a real loopback HTTP receiver: ntfy's publish format,
//! the webhook schema, once per event per training (also across a restart),
//! and receivers that hang, are down or answer 500 without slowing the relay.

mod common;
mod outbound;

use std::time::{Duration, Instant};

use common::*;
use outbound::{metric, wait_metrics, Mosquitto, Receiver};
use watchtrain_protocol::*;
use watchtrain_relay::Config;

fn config(urls: Vec<String>) -> Config {
    Config {
        notify: urls,
        public_url: Some("http://relay.lan:8555".into()),
        notify_timeout: Duration::from_millis(500),
        ..Config::in_memory()
    }
}

/// Registers `name` and sends one stats frame per row; returns the id and the next seq.
async fn train(ws: &mut Ws, name: &str, epochs: u32, rows: &[[f32; 3]]) -> (u32, u32) {
    let names = ["train_loss", "valid_loss", "accuracy"];
    let (id, _) = register(ws, 0, name, name, &names, epochs).await;
    let mut seq = 1;
    for (epoch, row) in rows.iter().enumerate() {
        send_frame(ws, &stats(id, seq, epoch as u32, row)).await;
        seq += 1;
    }
    wait_ack(ws, seq - 1).await;
    (id, seq)
}

#[tokio::test]
async fn ntfy_and_webhook_get_the_documented_requests() {
    let mut receiver = Receiver::start().await;
    let relay = Relay::start(config(vec![
        receiver.url("ntfy+http", "/ntfy/lab-trainings"),
        receiver.url("http", "/hook/slack?events=finished,failed"),
    ]))
    .await;
    let mut producer = connect(&relay.ws("/v1/produce")).await;
    let rows = [[0.9, 0.5, 0.80], [0.5, 0.183, 0.947], [0.4, 0.19, 0.95]];
    let (id, seq) = train(&mut producer, "resnet18 pets", 3, &rows).await;
    send_frame(&mut producer, &finished(id, seq)).await;
    wait_ack(&mut producer, seq).await;

    // ntfy: POST /<topic>, the summary as the body, the rest in headers.
    let ntfy = receiver.next("/ntfy/").await;
    assert_eq!(ntfy.path, "/ntfy/lab-trainings");
    assert_eq!(ntfy.header("title"), "resnet18 pets finished");
    assert_eq!(ntfy.header("priority"), "default");
    assert_eq!(ntfy.header("tags"), "white_check_mark,watchtrain");
    assert_eq!(ntfy.header("click"), format!("http://relay.lan:8555/#{id}"));
    assert_eq!(
        ntfy.body,
        "resnet18 pets finished: 3/3 epochs in 3s, best valid_loss 0.183 at epoch 2, accuracy 0.950"
    );

    // The webhook: JSON with the facts, and the summary in `text` (Slack) and `content` (Discord).
    let hook = receiver.next("/hook/").await;
    assert_eq!(
        hook.path, "/hook/slack",
        "events= is ours, not the receiver's"
    );
    assert_eq!(hook.header("content-type"), "application/json");
    let body = hook.json();
    assert_eq!(body["event"], "finished");
    assert_eq!(body["status"], "completed");
    assert_eq!(body["id"], id);
    assert_eq!(body["name"], "resnet18 pets");
    assert_eq!(
        (body["epoch"].as_u64(), body["epochs"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(body["duration_s"], 3);
    assert_eq!(body["latest"]["accuracy"], 0.95);
    assert_eq!(body["best"]["valid_loss"]["value"], 0.183);
    assert_eq!(body["best"]["valid_loss"]["epoch"], 2);
    assert_eq!(body["reason"], "done");
    assert_eq!(body["text"], ntfy.body);
    assert_eq!(body["content"], ntfy.body);
    // apprise-api's /notify fields.
    assert_eq!(body["body"], ntfy.body);
    assert_eq!(body["title"], "resnet18 pets finished");
    assert_eq!(body["type"], "success");
    assert_eq!(body["url"], format!("http://relay.lan:8555/#{id}"));

    // NaN goes to ntfy (default events) but not to the webhook (finished,failed only).
    let (nan_id, seq) = train(&mut producer, "bert", 0, &[[f32::NAN, 1.0, 0.5]]).await;
    let nan = receiver.next("/ntfy/").await;
    assert_eq!(nan.header("priority"), "high");
    assert_eq!(nan.header("title"), "bert went NaN");
    assert_eq!(nan.body, "bert went NaN in epoch 1: train_loss NaN");
    assert_eq!(
        nan.header("click"),
        format!("http://relay.lan:8555/#{nan_id}")
    );
    // A second NaN epoch is the same event: no second notification.
    send_frame(&mut producer, &stats(nan_id, seq, 1, &[f32::NAN, 1.0, 0.5])).await;
    wait_ack(&mut producer, seq).await;
    let extra = receiver.drain(Duration::from_millis(700)).await;
    assert!(extra.is_empty(), "unexpected {extra:?}");

    let (_, metrics) = http(relay.addr, "GET", "/metrics", &[], b"").await;
    assert!(
        metrics.contains("watchtrain_notifications_sent_total 3"),
        "{metrics}"
    );
    relay.stop().await;
}

/// The `event` of every webhook request until `quiet` passes without one.
async fn events(receiver: &mut Receiver, quiet: Duration) -> Vec<String> {
    let got = receiver.drain(quiet).await;
    got.iter()
        .map(|g| g.json()["event"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test]
async fn each_event_is_told_once_per_training_also_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::start().await;
    let cfg = Config {
        db: dir.path().join("relay.sqlite3"),
        stall_after: Duration::from_millis(300),
        ..config(vec![
            receiver.url("http", "/hook/x?events=stalled,resumed,finished")
        ])
    };
    let relay = Relay::start(cfg.clone()).await;
    let mut producer = connect(&relay.ws("/v1/produce")).await;
    let (id, mut seq) = train(&mut producer, "slowpoke", 5, &[[1.0, 1.0, 0.1]]).await;
    let stalled = receiver.next("/hook/").await.json();
    assert_eq!(stalled["event"], "stalled");
    assert_eq!(stalled["id"], id);
    // It comes back, stalls again, comes back again: one `stalled`, one `resumed`.
    for _ in 0..2 {
        send_frame(&mut producer, &progress(id, seq, 1, 1)).await;
        seq += 1;
        tokio::time::sleep(Duration::from_millis(900)).await;
    }
    let got = events(&mut receiver, Duration::from_millis(700)).await;
    assert_eq!(got, ["resumed"]);
    // Running again when the relay stops; after the restart it stalls again: not told again.
    send_frame(&mut producer, &progress(id, seq, 1, 2)).await;
    seq += 1;
    send_frame(&mut producer, &stats(id, seq, 1, &[0.9, 0.9, 0.2])).await;
    wait_ack(&mut producer, seq).await;
    seq += 1;
    drop(producer);
    relay.stop().await;

    let relay = Relay::start(cfg).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    let (_, body) = http(relay.addr, "GET", &format!("/v1/trainings/{id}"), &[], b"").await;
    assert!(
        body.contains("\"stalled\""),
        "it stalled after the restart: {body}"
    );
    let mut producer = connect(&relay.ws("/v1/produce")).await;
    register(
        &mut producer,
        id,
        "slowpoke",
        "slowpoke",
        &["train_loss", "valid_loss", "accuracy"],
        5,
    )
    .await;
    send_frame(&mut producer, &finished(id, seq)).await;
    wait_ack(&mut producer, seq).await;
    let first = receiver.next("/hook/").await.json();
    assert_eq!(
        first["event"], "finished",
        "stalled and resumed were told before the restart"
    );
    let more = events(&mut receiver, Duration::from_millis(700)).await;
    assert!(more.is_empty(), "{more:?}");
    // New progress reopens it: a run again, whose end is told again.
    send_frame(&mut producer, &progress(id, seq + 1, 2, 1)).await;
    send_frame(&mut producer, &finished(id, seq + 2)).await;
    wait_ack(&mut producer, seq + 2).await;
    let again = receiver.next("/hook/").await.json();
    assert_eq!(again["event"], "finished");
    relay.stop().await;
}

/// A producer and a watch of one new training on `relay`.
async fn watched(relay: &Relay, name: &str, epochs: u32) -> (Ws, Ws, u32) {
    let mut producer = connect(&relay.ws("/v1/produce")).await;
    let (id, _) = register(&mut producer, 0, name, name, &["loss"], epochs).await;
    let mut watch = connect(&relay.ws(&format!("/v1/trainings/{id}/watch"))).await;
    recv_frame(&mut watch).await; // the snapshot
    (producer, watch, id)
}

/// Milliseconds from sending epoch `epoch`'s stats to the watch receiving them.
async fn stats_latency(producer: &mut Ws, watch: &mut Ws, id: u32, epoch: u32) -> f64 {
    let sent = Instant::now();
    let values = [1.0 / (epoch as f32 + 1.0)];
    send_frame(producer, &stats(id, epoch + 1, epoch, &values)).await;
    loop {
        if let Action::Stats(s) = recv_frame(watch).await.action {
            if s.epoch == epoch {
                return sent.elapsed().as_secs_f64() * 1000.0;
            }
        }
    }
}

fn percentile(samples: &[f64], p: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_down_and_failing_receivers_do_not_slow_the_relay() {
    let mut receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path()).await;
    let quiet = Relay::start(Config::in_memory()).await;
    let busy = Relay::start(Config {
        mqtt: Some(broker.url("busy")),
        ..config(vec![
            receiver.url("http", "/hang/a?events=finished,failed,nan,stalled,resumed"),
            receiver.url("http", "/fail/b"),
            // Port 1 on loopback: nothing listens there, the connection is refused.
            "http://127.0.0.1:1/down".into(),
            receiver.url("ntfy+http", "/hang/ntfy"),
        ])
    })
    .await;
    // Keep every receiver busy: trainings that go NaN and finish while the latency is measured.
    let mut noisy = connect(&busy.ws("/v1/produce")).await;
    for i in 0..5 {
        let (id, seq) = train(
            &mut noisy,
            &format!("noisy {i}"),
            1,
            &[[f32::NAN, 1.0, 0.5]],
        )
        .await;
        send_frame(&mut noisy, &finished(id, seq)).await;
    }
    receiver.next("/hang/").await;
    // The two relays take turns, so both see the same machine load.
    let samples = 100;
    let (mut p_off, mut w_off, id_off) = watched(&quiet, "quiet", samples).await;
    let (mut p_on, mut w_on, id_on) = watched(&busy, "busy", samples).await;
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for epoch in 0..samples {
        off.push(stats_latency(&mut p_off, &mut w_off, id_off, epoch).await);
        on.push(stats_latency(&mut p_on, &mut w_on, id_on, epoch).await);
    }
    println!(
        "stats frame to watch, {samples} frames: notifications and MQTT off p50 {:.2} ms p99 {:.2} ms; \
         on (MQTT to Mosquitto, receivers hanging, down and failing) p50 {:.2} ms p99 {:.2} ms",
        percentile(&off, 0.5),
        percentile(&off, 0.99),
        percentile(&on, 0.5),
        percentile(&on, 0.99),
    );
    // A guard against a relay that waits for its receivers (a hang lasts 500 ms, then retries).
    assert!(
        percentile(&on, 0.5) < 400.0,
        "the relay waits for receivers: {on:?}"
    );

    // The 500 receiver is retried, then given up and counted.
    let fails = async {
        let mut n = 0;
        while n < 4 {
            receiver.next("/fail/").await;
            n += 1;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), fails)
        .await
        .expect("four tries of the first notification");
    wait_metrics(busy.addr, |m| {
        metric(m, "watchtrain_notifications_given_up_total") >= 2
    })
    .await;
    quiet.stop().await;
    busy.stop().await;
}

#[tokio::test]
async fn demo_sends_to_notify_urls() {
    let mut receiver = Receiver::start().await;
    let relay = Relay::start(Config {
        demo: true,
        demo_speed: 2000.0,
        ..config(vec![receiver.url("http", "/hook/demo?events=finished")])
    })
    .await;
    let got = receiver.next("/hook/").await.json();
    assert_eq!(got["event"], "finished");
    assert!(
        got["text"]
            .as_str()
            .unwrap()
            .starts_with("demo run 1 (simulated) finished: 12/12 epochs"),
        "{got}"
    );
    relay.stop().await;
}

#[tokio::test]
async fn bad_urls_stop_the_relay_with_a_reason_and_no_secret() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = watchtrain_relay::run(
        listener,
        config(vec!["smtp://user:hunter2@mail.example/secret-topic".into()]),
        async {},
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("--notify") && err.contains("unknown scheme `smtp`"),
        "{err}"
    );
    assert!(
        !err.contains("hunter2") && !err.contains("secret-topic"),
        "{err}"
    );
}

#[tokio::test]
async fn the_binary_reads_the_variable_and_the_file_and_logs_no_secret() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let mut receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notify-urls");
    let secret_url = format!(
        "http://user:hunter2@{}/fail/secret-path-from-file?events=finished",
        receiver.addr
    );
    std::fs::write(&file, format!("# a comment\n\n{secret_url}\n")).unwrap();
    let from_env = format!(
        "{} {}",
        receiver.url("http", "/hook/env-one?events=finished"),
        receiver.url("ntfy+http", "/ntfy/env-two?events=finished")
    );
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_watchtrain-relay"))
        .args(["--listen", "127.0.0.1:0", "--db", ":memory:", "--demo"])
        .args(["--demo-speed", "2000", "--notify-timeout", "200ms"])
        .arg("--notify-file")
        .arg(&file)
        .env("WATCHTRAIN_NOTIFY", from_env)
        .env("RUST_LOG", "watchtrain_relay=debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Read the log as it comes, so a full pipe never blocks the relay.
    let mut stderr = child.stderr.take().unwrap();
    let log = tokio::spawn(async move {
        let mut log = String::new();
        let _ = stderr.read_to_string(&mut log).await;
        log
    });
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = stdout.next_line().await.unwrap().unwrap();
    assert!(
        first.starts_with("watchtrain-relay listening on"),
        "{first}"
    );

    let one = receiver.next("/hook/env-one").await;
    assert_eq!(one.json()["event"], "finished");
    let two = receiver.next("/ntfy/env-two").await;
    assert!(
        two.body.starts_with("demo run 1 (simulated) finished"),
        "{}",
        two.body
    );
    let three = receiver.next("/fail/secret-path-from-file").await;
    assert_eq!(three.header("authorization"), "Basic dXNlcjpodW50ZXIy");
    // It answers 500: the relay retries, fails, gives up, and logs all that.
    for _ in 0..3 {
        receiver.next("/fail/").await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    child.start_kill().unwrap();
    let log = log.await.unwrap();
    assert!(log.contains("notification given up"), "{log}");
    for secret in [
        "hunter2",
        "secret-path-from-file",
        "env-one",
        "env-two",
        "dXNlcjpodW50ZXIy",
    ] {
        assert!(!log.contains(secret), "`{secret}` in the log:\n{log}");
    }
}

#[tokio::test]
async fn https_webhooks_are_checked_against_the_system_roots() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let (cert, private) = outbound::self_signed(dir.path());
    let mut receiver = Receiver::start_tls(&cert, &private).await;
    let url = receiver.url("https", "/hook/tls?events=finished");
    // The relay trusts what the system trusts; SSL_CERT_FILE makes the test's CA the system's.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_watchtrain-relay"))
        .args(["--listen", "127.0.0.1:0", "--db", ":memory:", "--demo"])
        .args(["--demo-speed", "2000", "--notify", &url])
        .env("SSL_CERT_FILE", &cert)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    stdout.next_line().await.unwrap().unwrap();
    let got = receiver.next("/hook/tls").await;
    assert_eq!(got.json()["event"], "finished");
    child.start_kill().unwrap();
}
