//! # watchtrain-relay
//!
//! The LAN relay of Watchtrain: trainings send frames to it, watches, phones
//! and browsers get a snapshot and then the live frames. It keeps each
//! training's state (the protocol crate's reducer), persists registrations,
//! stats and final status in SQLite, marks silent trainings as stalled, and
//! serves the ancestor's legacy JSON paths unchanged.
//!
//! It is not a renderer: the watch face is drawn at the edge.
//!
//! The binary is a thin shell over [`run`], which takes a bound listener, a
//! [`Config`] and a shutdown future, so tests drive a real relay on port 0:
//!
//! ```no_run
//! # async fn demo() -> Result<(), watchtrain_relay::RelayError> {
//! use watchtrain_relay::{run, Config};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let relay = tokio::spawn(run(listener, Config::in_memory(), async { let _ = stopped.await; }));
//! // ... connect to ws://{addr}/v1/produce and ws://{addr}/v1/watch ...
//! # let _ = addr;
//! let _ = stop.send(());
//! relay.await.expect("relay task")?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod config;
mod demo;
pub mod error;
pub mod face;
pub mod http;
pub mod hub;
pub mod mqtt;
pub mod notify;
pub mod store;
pub mod tls;
pub mod ws;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;

pub use config::Config;
pub use error::{Reason, Rejection, RelayError};
pub use http::router;
pub use hub::Hub;

/// Serves the relay on `listener` until `shutdown` completes, then closes
/// every connection, writes what is pending to the database and returns.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RelayError> {
    let outbound = notify::Plan::from_config(&config)?;
    let opened = store::Store::open(&config.db)?;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
        (None, None) => None,
        _ => {
            return Err(RelayError::Tls(
                "--tls-cert and --tls-key go together".into(),
            ))
        }
    };
    tracing::info!(
        db = %config.db.display(),
        trainings = opened.trainings.len(),
        unreadable = opened.unreadable.len(),
        tls = tls.is_some(),
        "relay starting"
    );
    let listening = listener.local_addr()?;
    let hub = Arc::new(Hub::new(
        config,
        opened.store,
        opened.trainings,
        &opened.unreadable,
    ));
    let outbound = outbound.start(&hub, listening, tls.is_some())?;
    let tick_every =
        (hub.config.stall_after / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let ticker = tokio::spawn({
        let hub = hub.clone();
        async move {
            let mut every = tokio::time::interval(tick_every);
            loop {
                every.tick().await;
                hub.tick();
            }
        }
    });
    let demo = hub
        .config
        .demo
        .then(|| tokio::spawn(demo::run(hub.clone())));
    let app = router(hub.clone());
    let signal = {
        let hub = hub.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down");
            hub.begin_shutdown();
        }
    };
    let served = match tls {
        Some(acceptor) => {
            let listener = tls::TlsListener::new(listener, acceptor)?;
            axum::serve(listener, app)
                .with_graceful_shutdown(signal)
                .await
        }
        None => {
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(listener, app)
                .with_graceful_shutdown(signal)
                .await
        }
    };
    // Whatever ended serving, connections are told to close.
    hub.begin_shutdown();
    ticker.abort();
    if let Some(demo) = demo {
        demo.abort();
    }
    outbound.stop().await;
    // Give WebSocket sessions a moment to send their close frames.
    let m = &hub.metrics;
    for _ in 0..100 {
        let open = m.producers.load(Ordering::Relaxed)
            + m.legacy_producers.load(Ordering::Relaxed)
            + m.consumers.load(Ordering::Relaxed)
            + m.legacy_consumers.load(Ordering::Relaxed);
        if open <= 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    hub.flush();
    hub.store.sync().await;
    served?;
    tracing::info!("relay stopped");
    Ok(())
}
