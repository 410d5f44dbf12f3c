//! Metric goals: only a metric with a goal has a "best" in the relay's JSON,
//! and a producer's declared goal overrides the default from the name.

mod common;

use common::*;
use watchtrain_protocol::*;
use watchtrain_relay::Config;

#[tokio::test]
async fn best_only_for_metrics_with_a_goal_and_declared_goals_win() {
    let relay = Relay::start(Config::in_memory()).await;
    let mut producer = connect(&relay.ws("/v1/produce")).await;
    let mut frame = register_frame(0, "goals", "g", &["valid_loss", "lr", "score"], 5);
    if let Action::Register(r) = &mut frame.action {
        // `lr` declared none; `score` (no goal by its name) declared minimized.
        r.goals = Goals::from_slice(&[Goal::Minimize, Goal::None, Goal::Minimize]).unwrap();
    }
    send_frame(&mut producer, &frame).await;
    let id = loop {
        let f = recv_frame(&mut producer).await;
        if let Action::Ack(_) = f.action {
            break f.training_id;
        }
    };
    let rows = [[0.9, 0.1, 5.0], [0.5, 0.01, 3.0], [0.7, 0.001, 4.0]];
    for (e, row) in rows.iter().enumerate() {
        send_frame(&mut producer, &stats(id, e as u32 + 1, e as u32, row)).await;
    }
    wait_ack(&mut producer, 3).await;
    let one = get_json(relay.addr, &format!("/v1/trainings/{id}")).await;
    assert_eq!(
        one["goals"],
        serde_json::json!(["min", "none", "min"]),
        "{one}"
    );
    assert_eq!(one["best"][0]["value"], 0.5, "{one}");
    assert!(
        one["best"][1].is_null(),
        "no best for a learning rate: {one}"
    );
    assert_eq!(
        one["best"][2]["value"], 3.0,
        "score is minimized as declared: {one}"
    );
    assert_eq!(one["best"][2]["epoch"], 1, "{one}");

    // A consumer's snapshot carries the goals too.
    let mut consumer = connect(&relay.ws(&format!("/v1/trainings/{id}/watch"))).await;
    let state = snapshot_state(&recv_frame(&mut consumer).await);
    assert_eq!(
        state.goals().as_slice(),
        [Goal::Minimize, Goal::None, Goal::Minimize]
    );
    assert_eq!(state.best_of(1), None);
    drop(producer);
    relay.stop().await;
}
