//! A consumer sees the relay alive: WebSocket pings are invisible to JavaScript,
//! so every ping interval also brings a heartbeat frame of the training followed.

mod common;

use std::time::Duration;

use common::*;
use watchtrain_protocol::*;
use watchtrain_relay::Config;

#[tokio::test]
async fn an_idle_consumer_gets_heartbeat_frames() {
    let relay = Relay::start(Config {
        ping_interval: Duration::from_millis(100),
        ..Config::in_memory()
    })
    .await;
    let mut producer = connect(&relay.ws("/v1/produce")).await;
    let (id, _) = register(&mut producer, 0, "idle", "idle", &["loss"], 2).await;
    let mut consumer = connect(&relay.ws(&format!("/v1/trainings/{id}/watch"))).await;
    assert!(matches!(
        recv_frame(&mut consumer).await.action,
        Action::Snapshot(_)
    ));
    for _ in 0..2 {
        let frame = recv_frame(&mut consumer).await;
        assert_eq!((frame.training_id, frame.action), (id, Action::Heartbeat));
    }
    relay.stop().await;
}
