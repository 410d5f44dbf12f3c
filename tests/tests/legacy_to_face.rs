//! An old fastai producer (the ancestor's callback, replayed byte for byte from
//! a real training) through a real relay to a late-joining binary consumer: the
//! consumer's state draws the same face, pixel for pixel, as the relay's
//! `face.png`, and the same as a state built straight from the messages.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use watchtrain_protocol::{json, Frame, Snapshot, Status, TrainingState};
use watchtrain_relay::{run, Config};
use watchtrain_watch::{render, Framebuffer, Screen, Theme};

fn fastai_messages() -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../protocol/tests/fixtures/fastai-callback.jsonl"
    );
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

async fn get(addr: std::net::SocketAddr, path: &str) -> Vec<u8> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tcp.read_to_end(&mut response).await.unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    assert!(
        response.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&response[..split])
    );
    response[split + 4..].to_vec()
}

#[tokio::test]
async fn fastai_callback_to_relay_to_watch_face() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let relay = tokio::spawn(run(listener, Config::in_memory(), async {
        let _ = stopped.await;
    }));

    // The old producer: every message as it sent it, on its path.
    let (mut producer, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws/watchtrain/producer/12345"))
            .await
            .unwrap();
    let messages = fastai_messages();
    producer
        .send(Message::text(messages[0].clone()))
        .await
        .unwrap();
    let reply = producer.next().await.unwrap().unwrap().into_text().unwrap();
    let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
    let id = reply["training_id"].as_u64().unwrap() as u32;
    for text in &messages[1..] {
        producer
            .send(Message::text(text.replace(
                "\"training_id\": 1",
                &format!("\"training_id\": {id}"),
            )))
            .await
            .unwrap();
    }

    // The same messages reduced locally, without the relay.
    let mut expected = TrainingState::new();
    for text in &messages {
        let msg = json::decode(text.as_bytes()).unwrap();
        for frame in msg.to_frames(id, &expected) {
            expected.apply(&frame).unwrap();
        }
    }

    // A consumer that joins after the training: the snapshot is the whole story.
    let watch = format!("ws://{addr}/v1/trainings/{id}/watch");
    let state = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let (mut consumer, _) = tokio_tungstenite::connect_async(&watch).await.unwrap();
            let first = consumer.next().await.unwrap().unwrap().into_data();
            let mut state = TrainingState::new();
            state.apply(&Frame::decode(&first).unwrap()).unwrap();
            if state.latest_epoch() == Some(2)
                && state.train().done == 48
                && state.valid().done == 12
                && state.epoch() == 2
            {
                return state;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the relay's snapshot reaches the end of the fixture");
    assert_eq!(
        state.status(),
        Status::Running,
        "an old producer never says it finished"
    );
    // An old producer sends no name: the relay gives one; all else is the messages'.
    assert_eq!(state.name().as_str(), format!("training {id}"));
    let expected = TrainingState::try_from(Snapshot {
        name: state.name().clone(),
        ..expected.as_snapshot().clone()
    })
    .unwrap();
    assert_eq!(format!("{state:?}"), format!("{expected:?}"));
    for (w, h) in [(336, 336), (300, 300), (348, 250)] {
        let ours = render(&state, Screen::new(w, h), &Theme::dark());
        let local = render(&expected, Screen::new(w, h), &Theme::dark());
        let png = get(addr, &format!("/v1/trainings/{id}/face.png?w={w}&h={h}")).await;
        let relays = Framebuffer::from_png(&png).unwrap();
        assert_eq!((relays.width(), relays.height()), (w, h));
        assert!(
            ours.data() == relays.data(),
            "consumer and relay faces differ at {w}x{h}"
        );
        assert!(
            ours.data() == local.data(),
            "relay state and local reduction draw differently at {w}x{h}"
        );
    }

    let _ = stop.send(());
    relay.await.unwrap().unwrap();
}
