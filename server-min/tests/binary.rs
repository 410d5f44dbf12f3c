//! The binary itself: `--help`, the demo, graceful shutdown on SIGTERM.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use watchtrain_relay::Config;

#[test]
fn help_documents_every_flag_with_its_environment_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_watchtrain-relay"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let flags: Vec<&str> = help
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("--") && !l.starts_with("--help") && !l.starts_with("--version"))
        .collect();
    assert!(flags.len() >= 15, "{help}");
    // Each flag's block names its variable.
    for flag in &flags {
        let name = flag
            .split_whitespace()
            .next()
            .unwrap()
            .trim_start_matches("--");
        let var = format!("WATCHTRAIN_{}", name.to_uppercase().replace('-', "_"));
        assert!(
            help.contains(&format!("[env: {var}")),
            "{var} missing in\n{help}"
        );
    }
}

#[tokio::test]
async fn the_demo_moves() {
    let relay = Relay::start(Config {
        demo: true,
        demo_speed: 100.0,
        ..Config::in_memory()
    })
    .await;
    let mut watch = connect(&relay.ws("/v1/watch")).await;
    let mut state = snapshot_state(&recv_frame(&mut watch).await);
    assert!(state.name().starts_with("demo run 1"));
    recv_until(&mut watch, &mut state, |s| s.latest_epoch() >= Some(1)).await;
    assert_eq!(state.metrics().len(), 3);
    assert!(state.latest().iter().all(|v| v.is_finite()));
    assert!(state.history_rows().count() >= 2);
    relay.stop().await;
}

#[tokio::test]
async fn sigterm_closes_connections_and_keeps_the_progress() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("relay.sqlite3");
    let db = db.to_str().unwrap();
    let relay = Binary::start(&["--db", db]).await;
    let mut producer = connect(&relay.ws("/v1/produce")).await;
    let (id, _) = register(&mut producer, 0, "term", "t", &["loss"], 4).await;
    send_frame(&mut producer, &progress(id, 1, 2, 7)).await;
    let mut watch = connect(&relay.ws(&format!("/v1/trainings/{id}/watch"))).await;
    let mut state = snapshot_state(&recv_frame(&mut watch).await);
    recv_until(&mut watch, &mut state, |s| s.train().done == 7).await;

    let pid = relay.child.id().unwrap().to_string();
    // The shell's builtin `kill`: no dependency on a kill binary.
    let term = Command::new("sh")
        .args(["-c", &format!("kill -TERM {pid}")])
        .status()
        .unwrap();
    assert!(term.success());
    let close = loop {
        match tokio::time::timeout(WAIT, watch.next()).await.unwrap() {
            Some(Ok(Message::Close(frame))) => break frame.unwrap(),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(u16::from(close.code), 1001);
    let mut child = relay.child;
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");

    // The progress, never written by a stats frame, was written at shutdown.
    let relay = Binary::start(&["--db", db]).await;
    let mut watch = connect(&relay.ws(&format!("/v1/trainings/{id}/watch"))).await;
    let state = snapshot_state(&recv_frame(&mut watch).await);
    assert_eq!((state.epoch(), state.train().done), (2, 7));
    tokio::time::sleep(Duration::from_millis(10)).await;
    relay.kill9().await;
}
