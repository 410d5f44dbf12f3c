//! The accept loop: caps on open connections (all, and per client address),
//! hyper's timer for the request-header timeout, TLS handshakes in their own
//! tasks, and a shutdown that lets open requests finish only for a bounded time.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::config::Config;

/// How long requests still open at shutdown may take to finish before they are cut.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// What a handler knows of its connection (a request extension).
#[derive(Clone)]
pub struct ConnectionInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// The connection's place under the caps: a WebSocket session keeps a clone.
    #[expect(dead_code, reason = "held for its Drop, which frees the place")]
    pub slot: Arc<Slot>,
}

/// One connection counted against the caps until dropped.
pub struct Slot {
    /// The per-address counts it is part of.
    counts: Arc<Counts>,
    /// Its client's address.
    ip: IpAddr,
    /// Its place under `--max-connections`.
    _permit: OwnedSemaphorePermit,
}

/// Open connections, in all and per address.
struct Counts {
    /// `--max-connections` permits.
    all: Arc<Semaphore>,
    /// Open connections by client address (no entry for zero).
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// `--max-connections-per-ip`.
    per_ip_max: usize,
}

impl Counts {
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let permit = self.all.clone().try_acquire_owned().ok()?;
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let open = per_ip.entry(ip).or_insert(0);
        if *open >= self.per_ip_max {
            return None;
        }
        *open += 1;
        Some(Slot {
            counts: self.clone(),
            ip,
            _permit: permit,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut per_ip = self.counts.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(open) = per_ip.get_mut(&self.ip) {
            *open -= 1;
            if *open == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// Serves `app` on `listener` (through TLS when `tls` is set) until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    config: &Config,
    shutdown: impl Future<Output = ()>,
) {
    let counts = Arc::new(Counts {
        all: Arc::new(Semaphore::new(config.max_connections)),
        per_ip: Mutex::new(HashMap::new()),
        per_ip_max: config.max_connections_per_ip,
    });
    // HTTP/1.1 only (WebSockets, and TLS offers only it): HTTP/2 detection would wait
    // for a first byte with no timeout. Without a timer hyper applies no header
    // timeout at all: a client could hold a connection (and, at shutdown, the
    // whole relay) by never sending or never finishing its headers.
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.request_timeout);
    // `stopping`: finish the request in progress, take no other; `cut`: close now.
    let stopping = CancellationToken::new();
    let cut = CancellationToken::new();
    let connections = TaskTracker::new();
    let handshake_timeout = config.request_timeout;
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors, mostly: wait for some to close.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(slot) = counts.take(peer.ip()) else {
            tracing::info!(%peer, "connection refused: --max-connections or --max-connections-per-ip reached");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let info = ConnectionInfo {
            peer,
            slot: Arc::new(slot),
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(info.clone());
            app.clone().oneshot(request)
        });
        let builder = builder.clone();
        let (stopping, cut, tls) = (stopping.clone(), cut.clone(), tls.clone());
        connections.spawn(async move {
            let work = async move {
                let io = match tls {
                    None => Either::Left(tcp),
                    Some(acceptor) => match handshake(&acceptor, tcp, handshake_timeout).await {
                        Some(stream) => Either::Right(stream),
                        None => return tracing::debug!(%peer, "tls handshake failed or timed out"),
                    },
                };
                let conn = builder
                    .serve_connection(TokioIo::new(io), service)
                    .with_upgrades();
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => return,
                    () = stopping.cancelled() => conn.as_mut().graceful_shutdown(),
                }
                let _ = conn.await;
            };
            tokio::select! {
                () = work => {}
                () = cut.cancelled() => {}
            }
        });
    }
    drop(listener);
    stopping.cancel();
    connections.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, connections.wait())
        .await
        .is_err()
    {
        tracing::info!("requests still open after {SHUTDOWN_GRACE:?}: cut");
        cut.cancel();
        connections.wait().await;
    }
}

async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    timeout: Duration,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    tokio::time::timeout(timeout, acceptor.accept(tcp))
        .await
        .ok()?
        .ok()
}
