//! A LAN attacker and a careless operator (issue 12): foreign web pages, DNS
//! rebinding, missing or empty tokens, other producers' trainings, floods,
//! half-sent requests, descriptor exhaustion, hostile names. Every test runs a
//! real relay on a loopback port; the attacker's sockets come from 127.0.0.2.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use watchtrain_protocol::*;
use watchtrain_relay::Config;

const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const LOCAL: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

/// Checks an answer's status and the reason of its JSON error.
#[track_caller]
fn assert_refused((status, body): (u16, String), want_status: u16, want_error: &str) {
    assert_eq!(
        (status, error_of(&body).as_str()),
        (want_status, want_error),
        "{body}"
    );
}

fn error_of(body: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"));
    v["error"].as_str().unwrap_or_default().to_owned()
}

async fn get(addr: std::net::SocketAddr, host: &str, path: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    raw(addr, LOCAL, request.as_bytes()).await
}

#[tokio::test]
async fn foreign_web_pages_can_neither_write_nor_read() {
    let relay = Relay::start(Config::in_memory()).await;
    let own = format!("http://{}", relay.addr);
    let evil = [("Origin", "http://evil.example")];
    for path in [
        "/v1/produce",
        "/v1/watch",
        "/ws/watchtrain/producer/1",
        "/ws/watchtrain/watch/1",
    ] {
        assert_eq!(
            connect_with(&relay.ws(path), &evil).await.err(),
            Some(403),
            "{path} from a foreign page"
        );
    }
    // The relay's own dashboard, and clients that are not web pages, are welcome.
    let mut producer = connect_with(&relay.ws("/v1/produce"), &[("Origin", &own)])
        .await
        .expect("the relay's own origin");
    let (id, _) = register(&mut producer, 0, "mine", "mine-key", &["loss"], 2).await;
    connect_with(&relay.ws("/v1/watch"), &[])
        .await
        .expect("no origin");
    // The Fitbit companion's origin is not documented: reading from a non-web origin works,
    // publishing from one does not.
    connect_with(&relay.ws("/v1/watch"), &[("Origin", "null")])
        .await
        .expect("a consumer with a non-http origin");
    assert_eq!(
        connect_with(&relay.ws("/v1/produce"), &[("Origin", "null")])
            .await
            .err(),
        Some(403)
    );

    // A form or fetch from a foreign page: refused; a text/plain "simple" request too.
    let body = post_body(&[stats(id, 1, 0, &[0.5])]);
    let path = format!("/v1/trainings/{id}/frames");
    for (headers, want) in [
        (
            vec![
                ("Origin", "http://evil.example"),
                ("Content-Type", "application/octet-stream"),
            ],
            (403, "origin"),
        ),
        (vec![("Content-Type", "text/plain")], (415, "media_type")),
    ] {
        let (status, reply) = http(relay.addr, "POST", &path, &headers, &body).await;
        assert_eq!((status, error_of(&reply).as_str()), want, "{reply}");
    }

    // DNS rebinding: a name that is not the relay's.
    let (status, reply) = get(relay.addr, "rebind.evil.example:8555", "/v1/trainings").await;
    assert_eq!(
        (status, error_of(&reply).as_str()),
        (403, "host"),
        "{reply}"
    );
    let port = relay.addr.port();
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        format!("192.168.1.20:{port}"),
    ] {
        assert_eq!(
            get(relay.addr, &host, "/v1/trainings").await.0,
            200,
            "{host}"
        );
    }
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let (status, reply) = get(
        relay.addr,
        &format!("{}:{port}", hostname.trim()),
        "/healthz",
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        get_json(relay.addr, &format!("/v1/trainings/{id}")).await["last_seq"],
        0,
        "nothing from the foreign page was applied"
    );
    relay.stop().await;

    let relay = Relay::start(Config {
        allow_host: vec!["relay.example.org".into()],
        allow_origin: vec!["https://lab.example.org".into()],
        ..Config::in_memory()
    })
    .await;
    assert_eq!(
        get(relay.addr, "relay.example.org", "/healthz").await.0,
        200
    );
    connect_with(
        &relay.ws("/v1/produce"),
        &[("Origin", "https://lab.example.org")],
    )
    .await
    .expect("an allowed origin");
    relay.stop().await;
}

#[tokio::test]
async fn tokens_are_never_empty_and_a_consumer_token_alone_does_not_start() {
    let (status, stderr) = run_binary(&["--consumer-token", "watch-secret"], &[]);
    assert!(
        status.is_some_and(|s| !s.success()),
        "started with a consumer token alone"
    );
    assert!(stderr.contains("--token"), "{stderr}");
    let (status, stderr) = run_binary(&["--token", ""], &[]);
    assert!(
        status.is_some_and(|s| !s.success()),
        "started with an empty token"
    );
    assert!(stderr.contains("empty"), "{stderr}");
    let (status, stderr) = run_binary(&[], &[("WATCHTRAIN_TOKEN", "  ")]);
    assert!(
        status.is_some_and(|s| !s.success()),
        "started with a blank token: {stderr}"
    );

    // A token from a file (not visible in `ps`), and `bearer` in any case.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "file-secret\n").unwrap();
    let relay = Binary::start(&["--db", ":memory:", "--token-file", file.to_str().unwrap()]).await;
    assert_eq!(connect_status(&relay.ws("/v1/produce")).await, 401);
    assert_eq!(
        produce_refusal(&relay, &[("Authorization", "bearer file-secret")]).await,
        None
    );
    let pid = relay.child.id().unwrap();
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(!cmdline.contains("file-secret"));
    relay.kill9().await;

    // `--help` names the variables but never prints their values.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_watchtrain-relay"))
        .arg("--help")
        .env("WATCHTRAIN_TOKEN", "s3cret-env")
        .env("WATCHTRAIN_CONSUMER_TOKEN", "w4tch-env")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("WATCHTRAIN_TOKEN"), "{help}");
    assert!(
        !help.contains("s3cret-env") && !help.contains("w4tch-env"),
        "{help}"
    );
}

#[tokio::test]
async fn a_training_belongs_to_its_producer() {
    let relay = Relay::start(Config::in_memory()).await;
    let mut owner = connect(&relay.ws("/v1/produce")).await;
    let (id, _) = register(&mut owner, 0, "mine", "owner-run-key", &["loss"], 5).await;
    send_frame(&mut owner, &stats(id, 1, 0, &[0.9])).await;
    wait_ack(&mut owner, 1).await;

    // The run key is the proof of ownership: consumers never see it.
    let listed = get_json(relay.addr, "/v1/trainings").await;
    assert!(!listed.to_string().contains("owner-run-key"), "{listed}");
    assert!(!get_json(relay.addr, &format!("/v1/trainings/{id}"))
        .await
        .to_string()
        .contains("owner-run-key"));

    // Another producer, on a WebSocket or over HTTP, cannot write to it.
    let mut stranger = connect(&relay.ws("/v1/produce")).await;
    send_frame(&mut stranger, &stats(id, 2, 1, &[0.0])).await;
    let refusal = recv_text(&mut stranger).await;
    assert_eq!(error_of(&refusal), "forbidden", "{refusal}");
    let (status, reply) = post_frames(relay.addr, id, &[stats(id, 2, 1, &[0.0])]).await;
    assert_eq!(status, 403, "{reply}");
    let (status, reply) = post_frames(
        relay.addr,
        id,
        &[
            register_frame(id, "theirs", "guess", &["loss"], 5),
            stats(id, 2, 1, &[0.0]),
        ],
    )
    .await;
    assert_ne!(
        status, 200,
        "a wrong run key wrote to the training: {reply}"
    );
    let one = get_json(relay.addr, &format!("/v1/trainings/{id}")).await;
    assert_eq!(
        (one["latest_epoch"].as_u64(), one["name"].as_str()),
        (Some(0), Some("mine"))
    );
    // A seq far beyond the window would poison every later frame: refused.
    let poison = Frame {
        training_id: id,
        seq: u32::MAX,
        action: Action::Heartbeat,
    };
    send_frame(&mut owner, &poison).await;
    assert_eq!(error_of(&recv_text(&mut owner).await), "bad_request");
    send_frame(&mut owner, &stats(id, 2, 1, &[0.8])).await;
    wait_ack(&mut owner, 2).await;
    let one = get_json(relay.addr, &format!("/v1/trainings/{id}")).await;
    assert_eq!(one["latest_epoch"], 1);
    assert_eq!(one["values"][0], serde_json::json!(0.800000011920929));
    // The owner over HTTP: its registration (with the run key) first, then frames.
    let (status, reply) = post_frames(
        relay.addr,
        0,
        &[
            register_frame(0, "mine", "owner-run-key", &["loss"], 5),
            stats(0, 3, 2, &[0.7]),
        ],
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    relay.stop().await;
}

#[tokio::test]
async fn a_registration_flood_evicts_no_running_training() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(Config {
        db: dir.path().join("relay.sqlite3"),
        keep_trainings: 3,
        max_trainings: 6,
        ..Config::in_memory()
    })
    .await;
    let mut real = connect(&relay.ws("/v1/produce")).await;
    let (id, _) = register(&mut real, 0, "real", "real", &["loss"], 5).await;
    send_frame(&mut real, &stats(id, 1, 0, &[0.5])).await;
    wait_ack(&mut real, 1).await;

    let mut flood = connect(&relay.ws("/v1/produce")).await;
    let mut refused = 0;
    for i in 0..12 {
        send_frame(
            &mut flood,
            &register_frame(0, "junk", &format!("junk-{i}"), &["x"], 1),
        )
        .await;
        loop {
            match next_message(&mut flood).await {
                tokio_tungstenite::tungstenite::Message::Text(t) => {
                    assert_eq!(error_of(&t), "limit", "{t}");
                    refused += 1;
                    break;
                }
                tokio_tungstenite::tungstenite::Message::Binary(b) => {
                    if matches!(Frame::decode(&b).unwrap().action, Action::Ack(_)) {
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    assert!(refused > 0, "the flood was never refused");
    let one = get_json(relay.addr, &format!("/v1/trainings/{id}")).await;
    assert_eq!(one["name"], "real");
    let (_, csv) = history_csv(relay.addr, u64::from(id), &[]).await;
    assert_eq!(csv.lines().count(), 2, "{csv}");
    relay.stop().await;
}

#[tokio::test]
async fn idle_and_half_sent_requests_are_cut_and_one_address_cannot_take_every_descriptor() {
    let relay = Binary::start_with(
        &[
            "--db",
            ":memory:",
            "--request-timeout",
            "1s",
            "--max-connections",
            "40",
            "--max-connections-per-ip",
            "8",
        ],
        &[],
        Some(64),
    )
    .await;
    // 80 idle sockets from one address, more than the relay has descriptors.
    let mut idle = Vec::new();
    for _ in 0..80 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind((ATTACKER, 0).into()).unwrap();
        if let Ok(tcp) = socket.connect(relay.addr).await {
            idle.push(tcp);
        }
    }
    // Everyone else is still served.
    let (status, _) = raw(
        relay.addr,
        LOCAL,
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "logs: {}", relay.logs());
    // The idle ones and a half-sent request are closed after the request timeout.
    let mut half = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(WAIT, half.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(_)) | Ok(Err(_))),
        "a half-sent request stays open"
    );
    let read = tokio::time::timeout(WAIT, idle[0].read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "an idle socket stays open"
    );
    relay.kill9().await;
}

#[tokio::test]
async fn sigterm_finishes_while_a_client_holds_a_half_sent_request() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("relay.sqlite3");
    let relay = Binary::start(&["--db", db.to_str().unwrap()]).await;
    let mut producer = connect(&relay.ws("/v1/produce")).await;
    register(&mut producer, 0, "wal", "wal", &["loss"], 1).await;
    let mut half_get = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    half_get
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let mut half_post = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    half_post
        .write_all(
            b"POST /v1/trainings/1/frames HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: 67108864\r\n\r\n",
        )
        .await
        .unwrap();
    half_post.write_all(&vec![0u8; 65536]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = relay.sigterm().await;
    assert!(status.success(), "{status}");
    // The WAL was checkpointed: the database file alone holds everything.
    let copy = dir.path().join("copy.sqlite3");
    std::fs::copy(&db, &copy).unwrap();
    let conn = rusqlite::Connection::open(&copy).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM trainings", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn numeric_flags_are_validated() {
    for args in [
        ["--ping-interval", "0"],
        ["--keep-trainings", "0"],
        ["--max-frame-bytes", "0"],
    ] {
        let (status, stderr) = run_binary(&args, &[]);
        assert!(status.is_some_and(|s| !s.success()), "{args:?} accepted");
        assert!(stderr.contains(args[0]), "{stderr}");
    }
}

#[tokio::test]
async fn errors_are_json_everywhere() {
    let relay = Relay::start(Config::in_memory()).await;
    assert_refused(
        http(relay.addr, "GET", "/v1/trainings/abc", &[], b"").await,
        400,
        "bad_request",
    );
    let big = vec![0u8; 4096 * 64 + 1];
    assert_refused(post_octets(relay.addr, 0, &big).await, 413, "too_large");
    let mut producer = connect(&relay.ws("/v1/produce")).await;
    let (id, _) = register(&mut producer, 0, "face", "face", &["loss"], 1).await;
    for query in ["w=65536&h=1", "w=100000&h=100000", "w=1&h=300"] {
        let (status, body) = http(
            relay.addr,
            "GET",
            &format!("/v1/trainings/{id}/face.png?{query}"),
            &[],
            b"",
        )
        .await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(error_of(&body), "bad_request");
    }
    relay.stop().await;
}

#[tokio::test]
async fn names_cannot_forge_log_lines_or_spreadsheet_formulas() {
    let relay = Binary::start_with(&["--db", ":memory:"], &[("RUST_LOG", "info")], None).await;
    let mut producer = connect(&relay.ws("/v1/produce")).await;
    let (id, _) = register(
        &mut producer,
        0,
        "x\nFAKE relay stopped",
        "k\nFAKE key",
        &["=HYPERLINK(1)", "a\rb", "plain"],
        3,
    )
    .await;
    send_frame(&mut producer, &stats(id, 1, 0, &[1.0, 2.0, 3.0])).await;
    wait_ack(&mut producer, 1).await;
    // A refused client is logged with its reason and address.
    assert_eq!(
        produce_refusal(&relay, &[("Origin", "http://evil.example")]).await,
        Some(403)
    );
    let (_, csv) = history_csv(relay.addr, u64::from(id), &[]).await;
    let header = csv.split('\n').next().unwrap();
    assert_eq!(
        header, "epoch,duration_ms,'=HYPERLINK(1),\"a\rb\",plain",
        "{csv:?}"
    );
    assert_eq!(
        csv.split('\n').filter(|l| !l.is_empty()).count(),
        2,
        "{csv:?}"
    );
    // The logs come through a pipe: wait for the refusal's line.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !relay.logs().contains("client refused") && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logs = relay.logs();
    assert!(logs.contains("training created"), "{logs}");
    assert!(!logs.lines().any(|l| l.starts_with("FAKE")), "{logs}");
    assert!(!logs.contains('\u{1b}'), "colours on a pipe: {logs:?}");
    assert!(
        logs.lines()
            .any(|l| l.contains("refused") && l.contains("origin") && l.contains("127.0.0.1")),
        "{logs}"
    );
    relay.kill9().await;
}

#[tokio::test]
async fn post_rate_limits_follow_the_address_not_the_path() {
    let relay = Relay::start(Config {
        max_fps: 5,
        ..Config::in_memory()
    })
    .await;
    let mut statuses = Vec::new();
    for id in 1001..1008 {
        statuses.push(
            post_frames(relay.addr, id, &[progress(id, 1, 0, 1)])
                .await
                .0,
        );
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    relay.stop().await;
}

#[tokio::test]
async fn the_largest_refusals_are_read_not_reset() {
    let relay = Relay::start(Config::in_memory()).await;
    // A 64 MiB POST: the client sends it all and reads a JSON 413.
    let big = vec![0u8; 64 << 20];
    assert_refused(post_octets(relay.addr, 0, &big).await, 413, "too_large");
    // A 2 MiB WebSocket message: the client reads the 1009 close and its reason.
    use futures_util::{SinkExt, StreamExt};
    let mut producer = connect(&relay.ws("/v1/produce")).await;
    let message = tokio_tungstenite::tungstenite::Message::Binary(vec![7u8; 2 << 20].into());
    let _ = producer.send(message).await;
    let close = loop {
        match tokio::time::timeout(WAIT, producer.next()).await.unwrap() {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected the close frame, got {other:?}"),
        }
    };
    let close = close.expect("a close frame with a code");
    assert_eq!(u16::from(close.code), 1009);
    assert!(close.reason.contains("max-frame-bytes"), "{close:?}");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_large_faces_at_once_keep_memory_bounded() {
    let relay = Binary::start(&["--db", ":memory:"]).await;
    let mut producer = connect(&relay.ws("/v1/produce")).await;
    let (id, _) = register(&mut producer, 0, "big", "big", &["loss"], 3).await;
    let path = format!("/v1/trainings/{id}/face.png?w=2048&h=2048");
    // 60: with the producer, under the 64 connections one address may hold.
    let requests: Vec<_> = (0..60)
        .map(|_| {
            let path = path.clone();
            let addr = relay.addr;
            tokio::spawn(async move { http(addr, "GET", &path, &[], b"").await.0 })
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.unwrap(), 200);
    }
    let pid = relay.child.id().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    println!("60 faces of 2048x2048 at once: relay peak RSS {peak_kib} KiB");
    assert!(peak_kib < 200 * 1024, "peak RSS {peak_kib} KiB");
    relay.kill9().await;
}

/// How a producer connection with `headers` is refused, `None` when it is accepted.
async fn produce_refusal(relay: &Binary, headers: &[(&str, &str)]) -> Option<u16> {
    connect_with(&relay.ws("/v1/produce"), headers).await.err()
}
