//! `--mqtt` against a real Mosquitto started by the test, watched by a real
//! MQTT client: retained state, events, availability with a last will, Home
//! Assistant discovery, a broker that is down, and a broker restart.

mod common;
mod outbound;

use std::time::Duration;

use common::*;
use outbound::{metric, wait_metrics, Mosquitto, Subscriber};
use serde_json::Value;
use watchtrain_relay::Config;

const METRICS: [&str; 3] = ["train_loss", "valid_loss", "accuracy"];

fn config(url: String) -> Config {
    Config {
        mqtt: Some(url),
        public_url: Some("http://relay.lan:8555".into()),
        ..Config::in_memory()
    }
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test]
async fn retained_state_events_availability_and_discovery() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path()).await;
    let mut early = Subscriber::start(broker.port, &["lab/#"]).await;
    let relay = Relay::start(config(broker.url("lab"))).await;
    early.until("lab/status", |p| p == "online").await;

    let mut producer = connect(&relay.ws("/v1/produce")).await;
    let (id, _) = register(&mut producer, 0, "resnet18 pets", "r18", &METRICS, 2).await;
    send_frame(&mut producer, &stats(id, 1, 0, &[0.9, 0.4, 0.8])).await;
    send_frame(&mut producer, &stats(id, 2, 1, &[0.5, 0.3, 0.9])).await;
    send_frame(&mut producer, &finished(id, 3)).await;
    wait_ack(&mut producer, 3).await;

    // Events are live (not retained) JSON, the same body as the webhook's.
    let (event, retained) = early.until(&format!("lab/{id}/event"), |_| true).await;
    assert!(!retained);
    let event = json(&event);
    assert_eq!(event["event"], "finished");
    assert_eq!(event["name"], "resnet18 pets");
    assert!(event["text"]
        .as_str()
        .unwrap()
        .starts_with("resnet18 pets finished: 2/2 epochs"));

    // A client that comes later gets the retained state and the discovery configs.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut late = Subscriber::start(broker.port, &["lab/#", "homeassistant/#"]).await;
    let got = late.collect(Duration::from_millis(800)).await;
    let (state, retained) = &got[&format!("lab/{id}/state")];
    assert!(retained);
    let state = json(state);
    assert_eq!(state["status"], "completed");
    assert_eq!(
        (state["epoch"].as_u64(), state["epochs"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(state["progress"], 100.0);
    assert_eq!(state["eta_s"], 0);
    assert_eq!(state["main_metric"], "valid_loss");
    assert_eq!(state["main_value"], 0.3);
    assert_eq!(got["lab/status"], ("online".to_owned(), true));
    let node = format!("watchtrain_lab_{id}");
    for (key, template) in [
        ("status", "{{ value_json.status }}"),
        ("epoch", "{{ value_json.epoch }}"),
        ("progress", "{{ value_json.progress }}"),
        ("eta", "{{ value_json.eta_s }}"),
        ("metric", "{{ value_json.main_value }}"),
    ] {
        let topic = format!("homeassistant/sensor/{node}_{key}/config");
        let (config, retained) = got
            .get(&topic)
            .unwrap_or_else(|| panic!("no {topic} in {:?}", got.keys()));
        assert!(retained, "{topic}");
        let config = json(config);
        assert_eq!(config["state_topic"], format!("lab/{id}/state"));
        assert_eq!(config["value_template"], template);
        assert_eq!(config["unique_id"], format!("{node}_{key}"));
        assert_eq!(config["availability_topic"], "lab/status");
        assert_eq!(config["device"]["name"], "resnet18 pets");
        assert_eq!(config["device"]["identifiers"][0], node);
    }
    let progress = json(&got[&format!("homeassistant/sensor/{node}_progress/config")].0);
    assert_eq!(progress["unit_of_measurement"], "%");
    let metric = json(&got[&format!("homeassistant/sensor/{node}_metric/config")].0);
    assert_eq!(metric["name"], "valid_loss");

    // A clean stop says offline, retained.
    relay.stop().await;
    let (status, _) = late.until("lab/status", |p| p == "offline").await;
    assert_eq!(status, "offline");
    early.stop().await;
    late.stop().await;
}

#[tokio::test]
async fn states_are_rate_limited_but_the_last_one_always_goes_out() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path()).await;
    let relay = Relay::start(config(broker.url("rate"))).await;
    let mut sub = Subscriber::start(broker.port, &["rate/+/state"]).await;
    let mut producer = connect(&relay.ws("/v1/produce")).await;
    let (id, _) = register(&mut producer, 0, "fast", "fast", &["loss"], 100).await;
    for epoch in 0..50u32 {
        send_frame(&mut producer, &stats(id, epoch + 1, epoch, &[1.0])).await;
    }
    wait_ack(&mut producer, 50).await;
    let mut states = 0;
    loop {
        // Live deliveries to a subscriber carry no retain flag (MQTT 3.1.1, 3.3.1.3).
        let (state, _) = sub.until(&format!("rate/{id}/state"), |_| true).await;
        states += 1;
        if json(&state)["epoch"] == 50 {
            assert_eq!(json(&state)["progress"], 50.0);
            break;
        }
    }
    assert!(
        states < 50,
        "{states} states for 50 epochs: not rate-limited"
    );
    let more = sub.collect(Duration::from_millis(1500)).await;
    assert!(
        more.is_empty(),
        "nothing new after the last state: {more:?}"
    );
    relay.stop().await;
    sub.stop().await;
}

#[tokio::test]
async fn last_will_says_offline_when_the_relay_dies() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path()).await;
    let mut sub = Subscriber::start(broker.port, &["will/status"]).await;
    let relay = Binary::start(&["--db", ":memory:", "--mqtt", &broker.url("will")]).await;
    sub.until("will/status", |p| p == "online").await;
    relay.kill9().await;
    let (status, _) = sub.until("will/status", |p| p == "offline").await;
    assert_eq!(status, "offline");
    // Retained: a client that comes later learns it too.
    let mut late = Subscriber::start(broker.port, &["will/status"]).await;
    let (status, retained) = late.until("will/status", |_| true).await;
    assert_eq!((status.as_str(), retained), ("offline", true));
    sub.stop().await;
    late.stop().await;
}

#[tokio::test]
async fn the_relay_works_with_the_broker_down_and_republishes_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path()).await;
    let relay = Relay::start(config(broker.url("lab2"))).await;
    let mut sub = Subscriber::start(broker.port, &["lab2/status"]).await;
    sub.until("lab2/status", |p| p == "online").await;
    sub.stop().await;

    // The broker goes away (and, without persistence, forgets every retained message).
    let (dir_path, port) = broker.kill().await;
    let mut producer = connect(&relay.ws("/v1/produce")).await;
    let (id, _) = register(&mut producer, 0, "offline run", "off", &METRICS, 4).await;
    let mut watch = connect(&relay.ws(&format!("/v1/trainings/{id}/watch"))).await;
    recv_frame(&mut watch).await;
    send_frame(&mut producer, &stats(id, 1, 0, &[0.9, 0.4, 0.8])).await;
    wait_ack(&mut producer, 1).await;
    let frame = recv_frame(&mut watch).await;
    assert!(
        matches!(frame.action, watchtrain_protocol::Action::Stats(_)),
        "{frame:?}"
    );

    // The broker comes back on the same port: the relay reconnects and republishes.
    let mut broker = None;
    for _ in 0..50 {
        broker = Mosquitto::start_on(&dir_path, port, "").await;
        if broker.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let broker = broker.expect("the broker's port is free again");
    let mut sub = Subscriber::start(broker.port, &["lab2/#", "homeassistant/#"]).await;
    let (state, retained) = sub
        .until(&format!("lab2/{id}/state"), |p| json(p)["epoch"] == 1)
        .await;
    let state = json(&state);
    assert_eq!(state["name"], "offline run");
    assert_eq!(state["progress"], 25.0);
    let _ = retained;
    sub.until("lab2/status", |p| p == "online").await;
    sub.until(
        &format!("homeassistant/sensor/watchtrain_lab2_{id}_status/config"),
        |_| true,
    )
    .await;
    wait_metrics(relay.addr, |m| metric(m, "watchtrain_mqtt_connected") == 1).await;
    relay.stop().await;
    sub.stop().await;
}

#[tokio::test]
async fn mqtts_with_a_private_ca_and_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, private) = outbound::self_signed(dir.path());
    let passwords = dir.path().join("passwords");
    let made = std::process::Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(&passwords)
        .args(["lab", "s3cret:pw"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let tls_broker = Mosquitto::start_with(
        dir.path(),
        &format!(
            "certfile {}\nkeyfile {}\npassword_file {}\nallow_anonymous false",
            cert.display(),
            private.display(),
            passwords.display()
        ),
    )
    .await;
    // A plain broker for the test's own subscriber would need TLS too; watch through the relay instead:
    // the relay's /metrics says it is connected, and its state reaches a TLS subscriber below.
    let url = format!(
        "mqtts://lab:s3cret%3Apw@127.0.0.1:{}/secure?ca={}",
        tls_broker.port,
        cert.display()
    );
    let relay = Relay::start(config(url)).await;
    let log = tls_broker.log.clone();
    let connected = tokio::time::timeout(
        outbound::WAIT,
        wait_metrics(relay.addr, |m| metric(m, "watchtrain_mqtt_connected") == 1),
    )
    .await;
    assert!(
        connected.is_ok(),
        "no TLS connection: {}",
        log.lock().unwrap()
    );
    // A wrong password is refused by the broker: the bridge stays disconnected, the relay serves on.
    let wrong = format!(
        "mqtts://lab:wrong@127.0.0.1:{}/secure?ca={}",
        tls_broker.port,
        cert.display()
    );
    let refused = Relay::start(config(wrong)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, metrics) = http(refused.addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("watchtrain_mqtt_connected 0"), "{metrics}");
    assert!(
        tls_broker.log.lock().unwrap().contains("not authorised"),
        "{}",
        tls_broker.log.lock().unwrap()
    );
    refused.stop().await;
    relay.stop().await;
}
