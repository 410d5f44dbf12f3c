//! A training that sends only epoch results (`watchtrain tail`, `send`,
//! `log_epoch` without `track`) is listed at the epoch it reported.

mod common;

use common::*;
use watchtrain_relay::Config;

#[tokio::test]
async fn stats_without_progress_show_the_reported_epoch() {
    let relay = Relay::start(Config::in_memory()).await;
    let mut producer = connect(&relay.ws("/v1/produce")).await;
    let (id, _) = register(&mut producer, 0, "tail", "", &["loss"], 5).await;
    for e in 0..5 {
        send_frame(&mut producer, &stats(id, e + 1, e, &[1.0 / (e + 1) as f32])).await;
    }
    wait_ack(&mut producer, 5).await;
    let one = get_json(relay.addr, &format!("/v1/trainings/{id}")).await;
    assert_eq!(
        (one["epoch"].as_u64(), one["epochs"].as_u64()),
        (Some(4), Some(5)),
        "{one}"
    );
    let mut consumer = connect(&relay.ws(&format!("/v1/trainings/{id}/watch"))).await;
    assert_eq!(snapshot_state(&recv_frame(&mut consumer).await).epoch(), 4);
    drop(producer);
    relay.stop().await;
}
