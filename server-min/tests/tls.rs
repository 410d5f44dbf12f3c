//! HTTPS/WSS with a certificate the client trusts (here a fresh self-signed one).

mod common;

use std::sync::Arc;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::{self, pki_types::ServerName, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use watchtrain_relay::Config;

#[tokio::test]
async fn wss_and_https_with_rustls() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, key.cert.pem()).unwrap();
    std::fs::write(&key_path, key.signing_key.serialize_pem()).unwrap();
    let relay = Relay::start(Config {
        tls_cert: Some(cert_path),
        tls_key: Some(key_path),
        ..Config::in_memory()
    })
    .await;

    let mut roots = RootCertStore::empty();
    roots.add(key.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(client));
    let name = ServerName::try_from("localhost").unwrap();

    // HTTPS.
    let tcp = TcpStream::connect(relay.addr).await.unwrap();
    let mut tls = connector.connect(name.clone(), tcp).await.unwrap();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    tls.read_to_string(&mut reply).await.ok();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");

    // WSS: a producer registers through it.
    let tcp = TcpStream::connect(relay.addr).await.unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let url = format!("wss://localhost:{}/v1/produce", relay.addr.port());
    let (ws, _) =
        tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(tls))
            .await
            .unwrap();
    // `Ws` is over a plain TcpStream; drive this one by hand.
    let mut ws = ws;
    use futures_util::{SinkExt, StreamExt};
    let frame = register_frame(0, "tls", "tls", &["loss"], 1);
    ws.send(tokio_tungstenite::tungstenite::Message::Binary(
        frame.to_bytes().unwrap().to_vec().into(),
    ))
    .await
    .unwrap();
    let reply = loop {
        match ws.next().await.unwrap().unwrap() {
            tokio_tungstenite::tungstenite::Message::Binary(b) => break b,
            _ => continue,
        }
    };
    let ack = watchtrain_protocol::Frame::decode(&reply).unwrap();
    assert_eq!(ack.training_id, 1);

    // Plain HTTP on the TLS port gets nothing useful.
    let (status, _) = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        let mut tcp = TcpStream::connect(relay.addr).await.unwrap();
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let _ = tcp.read_to_end(&mut buf).await;
        (
            String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"),
            (),
        )
    })
    .await
    .unwrap();
    assert!(!status);
    relay.stop().await;
}
