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
mod face;
mod guard;
mod http;
mod hub;
mod mqtt;
mod notify;
mod rate;
mod serve;
pub mod store;
mod tls;
mod ws;

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;

pub use config::Config;
pub use error::{Reason, Rejection, RelayError};
use http::router;
use hub::Hub;

/// Serves the relay on `listener` until `shutdown` completes, then closes
/// every connection (requests still open get a short grace period),
/// writes what is pending to the database, checkpoints it and returns.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RelayError> {
    let config = config.checked().map_err(RelayError::Config)?;
    let outbound = notify::Plan::from_config(&config)?;
    let opened = store::Store::open(&config.db, config.history_epochs)?;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
        _ => None,
    };
    tracing::info!(
        db = ?config.db.display(),
        trainings = opened.trainings.len(),
        unreadable = opened.unreadable.len(),
        tls = tls.is_some(),
        "relay starting"
    );
    let listening = listener.local_addr()?;
    let hub = Hub::new(config, opened.store, opened.trainings, opened.max_id);
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
    let signal = {
        let hub = hub.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down");
            hub.begin_shutdown();
        }
    };
    serve::serve(listener, tls, router(hub.clone()), &hub.config, signal).await;
    // Whatever ended serving, sessions are told to close; they get a moment for
    // their close frames.
    hub.begin_shutdown();
    ticker.abort();
    if let Some(demo) = demo {
        demo.abort();
    }
    outbound.stop().await;
    hub.sessions.close();
    if tokio::time::timeout(serve::SHUTDOWN_GRACE, hub.sessions.wait())
        .await
        .is_err()
    {
        tracing::warn!("WebSocket sessions still open after the grace period");
    }
    hub.flush();
    hub.store.close();
    let thread = opened.thread;
    if tokio::task::spawn_blocking(move || thread.join())
        .await
        .map_or(true, |joined| joined.is_err())
    {
        tracing::error!("the store thread failed");
    }
    tracing::info!("relay stopped");
    Ok(())
}
