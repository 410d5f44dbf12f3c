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

/// A shell script declares goals in the JSON body; a later post without
/// `"goals"` keeps them, and a bad declaration is refused with its reason.
#[tokio::test]
async fn a_shell_script_declares_goals_in_json() {
    let relay = Relay::start(Config::in_memory()).await;
    let path = "/v1/trainings/sweep/stats";
    let post = |body: &'static str| http(relay.addr, "POST", path, &[], body.as_bytes());
    let (status, reply) =
        post(r#"{"epoch":0,"score":5,"lr":0.1,"goals":{"score":"min","lr":"none"}}"#).await;
    assert_eq!(status, 200, "{reply}");
    let (status, reply) = post(r#"{"epoch":1,"score":3,"lr":0.01}"#).await;
    assert_eq!(status, 200, "{reply}");
    let id: u32 = serde_json::from_str::<serde_json::Value>(&reply).unwrap()["training_id"]
        .as_u64()
        .unwrap() as u32;
    let one = get_json(relay.addr, &format!("/v1/trainings/{id}")).await;
    // Metrics are in name order: lr, score.
    assert_eq!(one["goals"], serde_json::json!(["none", "min"]), "{one}");
    assert!(one["best"][0].is_null(), "{one}");
    assert_eq!(one["best"][1]["value"], 3.0, "{one}");

    for (body, why) in [
        (
            r#"{"epoch":2,"score":1,"goals":{"score":"up"}}"#,
            "a goal is min, max or none",
        ),
        (
            r#"{"epoch":2,"score":1,"goals":{"loss":"min"}}"#,
            "not a metric here",
        ),
        (r#"{"epoch":2,"score":1,"goals":["min"]}"#, "is an object"),
    ] {
        let (status, reply) = post(body).await;
        assert_eq!(status, 400, "{body}: {reply}");
        assert!(reply.contains(why), "{body}: {reply}");
    }
    relay.stop().await;
}
