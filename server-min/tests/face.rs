//! `GET /v1/trainings/{id}/face.png`: a real relay on a loopback port renders the
//! same face as the renderer does natively from the state a consumer receives.

mod common;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use watchtrain_relay::Config;
use watchtrain_watch::{render, Framebuffer, Screen, Theme};

/// A raw HTTP GET returning (status, body bytes).
async fn get_bytes(addr: std::net::SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut body = raw[end + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let len =
                usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap().trim(), 16)
                    .unwrap();
            if len == 0 {
                break;
            }
            out.extend_from_slice(&rest[line_end + 2..line_end + 2 + len]);
            rest = &rest[line_end + 2 + len + 2..];
        }
        body = out;
    }
    (status, body)
}

#[tokio::test]
async fn face_png_is_the_native_render_of_the_relays_state() {
    let relay = Relay::start(Config::in_memory()).await;
    let mut producer = connect(&relay.ws("/v1/produce")).await;
    let (id, _) = register(
        &mut producer,
        0,
        "face test",
        "face-run",
        &["train_loss", "valid_loss", "accuracy"],
        8,
    )
    .await;
    send_frame(&mut producer, &stats(id, 1, 0, &[1.2, 1.3, 0.4])).await;
    send_frame(&mut producer, &stats(id, 2, 1, &[0.9, f32::NAN, 0.6])).await;
    send_frame(&mut producer, &progress(id, 3, 2, 5)).await;
    wait_ack(&mut producer, 3).await;

    let mut consumer = connect(&relay.ws(&format!("/v1/trainings/{id}/watch"))).await;
    let state = snapshot_state(&recv_frame(&mut consumer).await);
    assert_eq!(state.latest_epoch(), Some(1));

    for (w, h) in [(336, 336), (348, 250), (800, 480)] {
        let (status, png) = get_bytes(
            relay.addr,
            &format!("/v1/trainings/{id}/face.png?w={w}&h={h}"),
        )
        .await;
        assert_eq!(status, 200);
        let got = Framebuffer::from_png(&png).unwrap();
        assert_eq!(
            got,
            render(&state, Screen::new(w, h), &Theme::dark()),
            "{w}x{h}"
        );
    }
    // Defaults to the Versa 3's size.
    let (_, png) = get_bytes(relay.addr, &format!("/v1/trainings/{id}/face.png")).await;
    let got = Framebuffer::from_png(&png).unwrap();
    assert_eq!((got.width(), got.height()), (336, 336));

    assert_eq!(
        get_bytes(relay.addr, "/v1/trainings/999/face.png").await.0,
        404
    );
    assert_eq!(
        get_bytes(relay.addr, &format!("/v1/trainings/{id}/face.png?w=abc"))
            .await
            .0,
        400
    );
    assert_eq!(
        get_bytes(
            relay.addr,
            &format!("/v1/trainings/{id}/face.png?w=100000&h=100000")
        )
        .await
        .0,
        400
    );
    relay.stop().await;
}
