//! The WebSocket sessions: producers (binary and legacy JSON) and consumers
//! (by id, following the latest, legacy). Each is generic over a `Sink` and a
//! `Stream` of messages, so the demo (and tests) can drive it through channels.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::broadcast::{
    self,
    error::{RecvError, TryRecvError},
};
use tokio::time::{interval, Instant, MissedTickBehavior};
use watchtrain_protocol::json::{self, LegacyMessage};
use watchtrain_protocol::{Ack, Action, Frame};

use crate::error::{Reason, Rejection};
use crate::hub::{durable, Event, Gauge, Hub, Ingested, RegisterRequest, Writer};
use crate::rate::Bucket;

/// Close code: going away (the relay shuts down).
const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code: message too big.
const CLOSE_TOO_BIG: u16 = 1009;
/// Close code: policy violation (a dead peer).
const CLOSE_POLICY: u16 = 1008;
/// Events sent to one consumer before a flush.
const SEND_BATCH: usize = 64;
/// How often a producer's pending ack is sent.
const ACK_EVERY: Duration = Duration::from_millis(250);

/// Which producer protocol a session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProducerKind {
    /// Binary frames on `/v1/produce`.
    Binary,
    /// The ancestor's JSON on `/ws/watchtrain/producer/{client_id}`.
    Legacy,
}

/// Trainings one producer connection may hold registered (and so own) at once.
const OWNED_MAX: usize = 16;

/// One producer connection's memory.
struct Producer {
    hub: Arc<Hub>,
    /// The training this connection registered last.
    current: Option<u32>,
    /// The trainings this connection registered, so may write to.
    owned: Vec<u32>,
    /// An ack to send soon: (training, seq).
    pending_ack: Option<(u32, u32)>,
}

impl Drop for Producer {
    fn drop(&mut self) {
        // The current training is counted as connected in the hub (never evicted) while open.
        if let Some(id) = self.current {
            self.hub.detach_producer(id);
        }
    }
}

/// What a producer session does after a message of its peer.
enum Step {
    /// Sends this answer (an ack or a refusal).
    Reply(Message),
    /// Nothing to answer yet.
    Quiet,
    /// The peer closed.
    Close,
}

fn ack_message(training_id: u32, seq: u32) -> Message {
    let frame = Frame {
        training_id,
        seq: 0,
        action: Action::Ack(Ack { seq }),
    };
    let bytes = frame.to_bytes().map(|b| b.to_vec()).unwrap_or_default();
    Message::Binary(bytes.into())
}

impl Producer {
    /// Registers for this connection. Its previous training is no longer held
    /// connected first, so that one may be evicted to make room.
    async fn register(&mut self, request: RegisterRequest) -> Result<Ingested, Rejection> {
        let permit = self.hub.store.permit().await;
        let previous = self.current.take();
        if let Some(id) = previous {
            self.hub.detach_producer(id);
        }
        let result = self.hub.register(request, permit);
        let id = result.as_ref().map(|ing| ing.training_id).ok().or(previous);
        if let Some(id) = id {
            self.own(id);
        }
        result
    }

    /// Notes that this connection registered `id`, which becomes its current training.
    fn own(&mut self, id: u32) {
        if self.current != Some(id) {
            if let Some(previous) = self.current {
                self.hub.detach_producer(previous);
            }
            self.hub.attach_producer(id);
            self.current = Some(id);
        }
        if !self.owned.contains(&id) {
            if self.owned.len() >= OWNED_MAX {
                self.owned.remove(0);
            }
            self.owned.push(id);
        }
    }

    /// Handles one message of the peer: a frame (rate limited), or a close.
    async fn on_message(&mut self, msg: Message, kind: ProducerKind, bucket: &mut Bucket) -> Step {
        let result = match (msg, kind) {
            (Message::Binary(bytes), ProducerKind::Binary) => {
                bucket.take().await;
                self.hub.metrics.frames_in.fetch_add(1, Ordering::Relaxed);
                self.on_binary(&bytes).await
            }
            (Message::Text(text), ProducerKind::Legacy) => {
                bucket.take().await;
                self.hub.metrics.frames_in.fetch_add(1, Ordering::Relaxed);
                self.on_legacy(text.as_str()).await
            }
            (Message::Binary(_), ProducerKind::Legacy) => Err(Rejection::new(
                Reason::BadRequest,
                "the legacy producer path takes JSON text messages",
            )),
            (Message::Text(_), ProducerKind::Binary) => Err(Rejection::new(
                Reason::BadRequest,
                "/v1/produce takes binary frames; legacy JSON goes to /ws/watchtrain/producer/{id}",
            )),
            (Message::Close(_), _) => return Step::Close,
            _ => return Step::Quiet,
        };
        match result {
            Ok(Some(reply)) => Step::Reply(reply),
            Ok(None) => Step::Quiet,
            Err(rejection) => {
                self.hub.metrics.reject(rejection.reason);
                tracing::debug!(rejection = ?rejection.to_string(), "producer frame rejected");
                Step::Reply(Message::Text(rejection.to_json().into()))
            }
        }
    }

    async fn on_binary(&mut self, bytes: &[u8]) -> Result<Option<Message>, Rejection> {
        let frame =
            Frame::decode(bytes).map_err(|e| Rejection::new(Reason::Decode, e.to_string()))?;
        match frame.action {
            Action::Register(register) => {
                let request = RegisterRequest {
                    training_id: frame.training_id,
                    seq: frame.seq,
                    register: Some(register),
                };
                let ing = self.register(request).await?;
                durable(ing.receipt).await?;
                self.own(ing.training_id);
                self.pending_ack = None;
                Ok(Some(ack_message(ing.training_id, ing.last_seq)))
            }
            Action::Ack(_) | Action::Snapshot(_) | Action::Stalled => Err(Rejection::new(
                Reason::BadRequest,
                "ack, snapshot and stalled frames are sent by the relay only",
            )),
            action => {
                let training_id = match frame.training_id {
                    0 => self.current.ok_or_else(|| {
                        Rejection::new(Reason::UnknownTraining, "register a training first")
                    })?,
                    id => id,
                };
                let frame = Frame {
                    training_id,
                    seq: frame.seq,
                    action,
                };
                let writer = Writer {
                    owns: self.owned.contains(&training_id),
                    create_unknown: false,
                };
                let ing = self
                    .hub
                    .apply(&frame, writer, self.hub.store.permit().await)?;
                if ing.receipt.is_some() {
                    durable(ing.receipt).await?;
                    self.pending_ack = None;
                    return Ok(Some(ack_message(training_id, ing.last_seq)));
                }
                if frame.seq != 0 {
                    self.pending_ack = Some((training_id, ing.last_seq));
                }
                Ok(None)
            }
        }
    }

    async fn on_legacy(&mut self, text: &str) -> Result<Option<Message>, Rejection> {
        let msg = json::decode(text.as_bytes())
            .map_err(|e| Rejection::new(Reason::Json, e.to_string()))?;
        if let LegacyMessage::Register { training_id } = msg {
            let request = RegisterRequest {
                training_id: training_id.unwrap_or(0),
                seq: 0,
                register: None,
            };
            let ing = self.register(request).await?;
            durable(ing.receipt).await?;
            self.own(ing.training_id);
            // The ancestor's callback reads this reply in its constructor while its own
            // reader thread reads the same socket: answering at once makes old trainings
            // hang at start (see DESIGN.md). Hold it a little.
            tokio::time::sleep(self.hub.config.legacy_register_delay).await;
            let mut buf = [0u8; 128];
            let reply = json::encode_register_reply(ing.training_id, training_id, &mut buf)
                .map_err(|e| Rejection::new(Reason::BadRequest, e.to_string()))?;
            return Ok(Some(Message::Text(reply.to_owned().into())));
        }
        let id = msg.training_id().or(self.current).ok_or_else(|| {
            Rejection::new(
                Reason::UnknownTraining,
                "send register_training first (or give a training_id)",
            )
        })?;
        if self.current.is_none() {
            self.own(id);
        }
        let ing = self.hub.apply_legacy(id, &msg).await?;
        durable(ing.receipt).await?;
        Ok(None)
    }
}

/// Sends `msg`, giving up after `timeout` (a peer that does not read).
async fn send<S>(sink: &mut S, msg: Message, timeout: Duration) -> bool
where
    S: Sink<Message, Error = axum::Error> + Unpin,
{
    matches!(
        tokio::time::timeout(timeout, sink.send(msg)).await,
        Ok(Ok(()))
    )
}

async fn close<S>(sink: &mut S, code: u16, reason: &str)
where
    S: Sink<Message, Error = axum::Error> + Unpin,
{
    let frame = CloseFrame {
        code,
        reason: reason.to_owned().into(),
    };
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        sink.send(Message::Close(Some(frame))),
    )
    .await;
}

/// Reads what the peer still sends after a close, briefly: closing with unread
/// bytes makes the kernel reset the connection, and the peer would never read
/// the close reason.
async fn drain<R>(stream: &mut R)
where
    R: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let deadline = Instant::now() + Duration::from_secs(1);
    while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, stream.next()).await {
        if matches!(msg, Message::Close(_)) {
            break;
        }
    }
}

/// The close code and reason for a read error (an oversized message, mostly).
fn read_error(hub: &Hub, e: &axum::Error) -> (u16, String) {
    let text = e.to_string();
    if text.contains("too long") || text.contains("too big") || text.contains("Space limit") {
        hub.metrics.reject(Reason::TooLarge);
        (
            CLOSE_TOO_BIG,
            format!(
                "message over {} bytes (--max-frame-bytes)",
                hub.config.max_frame_bytes
            ),
        )
    } else {
        (CLOSE_POLICY, text)
    }
}

/// Runs one producer session until the peer leaves or the relay shuts down.
pub async fn produce<S, R>(hub: Arc<Hub>, mut sink: S, mut stream: R, kind: ProducerKind)
where
    S: Sink<Message, Error = axum::Error> + Unpin,
    R: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let gauge = match kind {
        ProducerKind::Binary => &hub.metrics.producers,
        ProducerKind::Legacy => &hub.metrics.legacy_producers,
    };
    let _gauge = Gauge::new(gauge);
    let ping_every = hub.config.ping_interval;
    let mut ping = interval(ping_every);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ping.tick().await;
    let mut acks = interval(ACK_EVERY);
    let mut shutdown = hub.shutdown_signal();
    let mut bucket = Bucket::new(hub.config.max_fps);
    let mut last_seen = Instant::now();
    let mut session = Producer {
        hub: hub.clone(),
        current: None,
        owned: Vec::new(),
        pending_ack: None,
    };
    tracing::info!(?kind, "producer connected");
    loop {
        tokio::select! {
            msg = stream.next() => {
                let msg = match msg {
                    None => break,
                    Some(Ok(msg)) => msg,
                    Some(Err(e)) => {
                        let (code, reason) = read_error(&hub, &e);
                        tracing::debug!(%reason, "producer read error");
                        close(&mut sink, code, &reason).await;
                        drain(&mut stream).await;
                        break;
                    }
                };
                last_seen = Instant::now();
                // A producer whose frames are all buffered would otherwise run on
                // without yielding, and its consumers would fall behind.
                tokio::task::coop::consume_budget().await;
                match session.on_message(msg, kind, &mut bucket).await {
                    Step::Reply(reply) => {
                        if !send(&mut sink, reply, ping_every).await {
                            break;
                        }
                    }
                    Step::Quiet => {}
                    Step::Close => break,
                }
            }
            _ = acks.tick(), if session.pending_ack.is_some() => {
                if let Some((id, seq)) = session.pending_ack.take() {
                    if !send(&mut sink, ack_message(id, seq), ping_every).await {
                        break;
                    }
                }
            }
            _ = ping.tick() => {
                if last_seen.elapsed() > ping_every * 2 {
                    close(&mut sink, CLOSE_POLICY, "no pong").await;
                    break;
                }
                if !send(&mut sink, Message::Ping(Default::default()), ping_every).await {
                    break;
                }
            }
            _ = shutdown.changed() => {
                close(&mut sink, CLOSE_GOING_AWAY, "relay shutting down").await;
                break;
            }
        }
    }
    if let Some((id, seq)) = session.pending_ack.take() {
        let _ = send(&mut sink, ack_message(id, seq), Duration::from_millis(100)).await;
    }
    tracing::info!(?kind, training = ?session.current, "producer disconnected");
}

/// What a consumer session follows.
pub enum Feed {
    /// One training by id; its slot was taken and the snapshot made before the upgrade.
    Training {
        /// The training.
        id: u32,
        /// Its snapshot at subscription.
        snapshot: axum::body::Bytes,
        /// What follows the snapshot.
        rx: broadcast::Receiver<Arc<Event>>,
    },
    /// The latest registered training (`/v1/watch`); switches when a newer one registers.
    Latest,
    /// The ancestor's JSON for every training (`verbose` adds logs and registrations).
    Legacy {
        /// Also send debug lines and registrations.
        verbose: bool,
    },
}

async fn recv(rx: &mut Option<broadcast::Receiver<Arc<Event>>>) -> Result<Arc<Event>, RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// What one consumer follows and how far it got: the three feeds behind one face.
struct Follower {
    hub: Arc<Hub>,
    /// The ancestor's JSON rather than binary frames.
    legacy: bool,
    /// Legacy only: also debug lines and registrations.
    verbose: bool,
    /// `/v1/watch`: switches to each newer training.
    follow: bool,
    /// The training followed (binary feeds).
    current: Option<u32>,
    /// Its receiver, or the legacy one; `None` before the first training.
    rx: Option<broadcast::Receiver<Arc<Event>>>,
}

/// The training a consumer watched by id was dropped (retention).
struct Removed;

impl Follower {
    /// The follower and what it sends first.
    fn start(hub: Arc<Hub>, feed: Feed) -> (Follower, Vec<Message>) {
        let mut follower = Follower {
            hub,
            legacy: false,
            verbose: false,
            follow: false,
            current: None,
            rx: None,
        };
        let first = match feed {
            Feed::Training { id, snapshot, rx } => {
                follower.current = Some(id);
                follower.rx = Some(rx);
                vec![Message::Binary(snapshot)]
            }
            Feed::Latest => {
                follower.follow = true;
                Vec::new()
            }
            Feed::Legacy { verbose } => {
                follower.legacy = true;
                follower.verbose = verbose;
                follower.resync()
            }
        };
        (follower, first)
    }

    /// A fresh start for a consumer that fell behind: the snapshot (or the
    /// legacy greeting) and a new receiver.
    fn resync(&mut self) -> Vec<Message> {
        if self.legacy {
            let (texts, rx) = self.hub.subscribe_legacy();
            self.rx = Some(rx);
            return texts.into_iter().map(|t| Message::Text(t.into())).collect();
        }
        let Some(id) = self.current else {
            return Vec::new();
        };
        match self.hub.subscribe(id, false) {
            Ok((snapshot, rx)) => {
                self.rx = Some(rx);
                vec![Message::Binary(snapshot)]
            }
            Err(_) => {
                self.rx = None;
                Vec::new()
            }
        }
    }

    /// `event` and what else is queued, up to [`SEND_BATCH`] messages.
    fn batch(&mut self, event: Result<Arc<Event>, RecvError>) -> Result<Vec<Message>, Removed> {
        let mut batch = Vec::with_capacity(8);
        let mut next = Some(event);
        while let Some(event) = next.take() {
            match event {
                Ok(event) => batch.extend(self.to_message(&event)),
                Err(RecvError::Lagged(missed)) => {
                    self.hub.metrics.resyncs.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(missed, "consumer behind: resync with a snapshot");
                    batch = self.resync();
                }
                Err(RecvError::Closed) => {
                    self.rx = None;
                    if !self.follow && !self.legacy {
                        return Err(Removed);
                    }
                }
            }
            if batch.len() < SEND_BATCH {
                next = match self.rx.as_mut().map(|rx| rx.try_recv()) {
                    Some(Ok(event)) => Some(Ok(event)),
                    Some(Err(TryRecvError::Lagged(n))) => Some(Err(RecvError::Lagged(n))),
                    _ => None,
                };
            }
        }
        Ok(batch)
    }

    /// `/v1/watch`: the snapshot of a newer latest training, now followed.
    fn switch(&mut self, latest: Option<u32>) -> Option<Message> {
        let id = latest.filter(|id| Some(*id) != self.current)?;
        let (snapshot, rx) = self.hub.subscribe(id, false).ok()?;
        self.current = Some(id);
        self.rx = Some(rx);
        Some(Message::Binary(snapshot))
    }

    /// WebSocket pings are invisible to JavaScript: a heartbeat frame lets a
    /// browser or the Fitbit companion tell a live relay from a half-open socket.
    fn heartbeat(&self) -> Option<Message> {
        if self.legacy {
            return None;
        }
        let heartbeat = Frame {
            training_id: self.current.unwrap_or(0),
            seq: 0,
            action: Action::Heartbeat,
        };
        let bytes = heartbeat.to_bytes().ok()?;
        Some(Message::Binary(bytes.to_vec().into()))
    }

    fn to_message(&self, event: &Event) -> Option<Message> {
        if !self.legacy {
            return Some(Message::Binary(event.bin.clone()));
        }
        if event.verbose_only && !self.verbose {
            return None;
        }
        let text = event.legacy.as_ref()?;
        Some(Message::Text(text.clone().into()))
    }
}

/// Runs one consumer session: first the snapshot, then live frames; a consumer
/// that falls behind gets a fresh snapshot instead of an ever longer queue.
pub async fn consume<S, R>(hub: Arc<Hub>, mut sink: S, mut stream: R, feed: Feed)
where
    S: Sink<Message, Error = axum::Error> + Unpin,
    R: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let gauge = match feed {
        Feed::Legacy { .. } => &hub.metrics.legacy_consumers,
        _ => &hub.metrics.consumers,
    };
    let _gauge = Gauge::new(gauge);
    let ping_every = hub.config.ping_interval;
    let mut ping = interval(ping_every);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ping.tick().await;
    let mut shutdown = hub.shutdown_signal();
    let mut last_seen = Instant::now();
    let mut latest = hub.latest();
    latest.mark_changed();
    let (mut follower, first) = Follower::start(hub.clone(), feed);
    let mut ok = send_all(&hub, &mut sink, first, ping_every).await;
    while ok {
        tokio::select! {
            event = recv(&mut follower.rx) => match follower.batch(event) {
                Ok(batch) => ok = send_all(&hub, &mut sink, batch, ping_every).await,
                Err(Removed) => {
                    close(&mut sink, 1000, "training removed").await;
                    break;
                }
            },
            changed = latest.changed(), if follower.follow => {
                if changed.is_ok() {
                    let id = *latest.borrow_and_update();
                    let snapshot = follower.switch(id);
                    ok = send_all(&hub, &mut sink, snapshot.into_iter().collect(), ping_every).await;
                }
            }
            msg = stream.next() => match msg {
                None | Some(Ok(Message::Close(_))) => break,
                Some(Err(e)) => {
                    let (code, reason) = read_error(&hub, &e);
                    close(&mut sink, code, &reason).await;
                    drain(&mut stream).await;
                    break;
                }
                Some(Ok(_)) => last_seen = Instant::now(),
            },
            _ = ping.tick() => {
                if last_seen.elapsed() > ping_every * 2 {
                    close(&mut sink, CLOSE_POLICY, "no pong").await;
                    break;
                }
                ok = send(&mut sink, Message::Ping(Default::default()), ping_every).await;
                if let Some(heartbeat) = follower.heartbeat().filter(|_| ok) {
                    ok = send(&mut sink, heartbeat, ping_every).await;
                }
            }
            _ = shutdown.changed() => {
                close(&mut sink, CLOSE_GOING_AWAY, "relay shutting down").await;
                break;
            }
        }
    }
}

/// Sends a batch (counted in `frames_out`) within `timeout`; false when the peer does not take it.
async fn send_all<S>(hub: &Hub, sink: &mut S, batch: Vec<Message>, timeout: Duration) -> bool
where
    S: Sink<Message, Error = axum::Error> + Unpin,
{
    if batch.is_empty() {
        return true;
    }
    hub.metrics
        .frames_out
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    let work = async {
        for msg in batch {
            sink.feed(msg).await?;
        }
        sink.flush().await
    };
    matches!(tokio::time::timeout(timeout, work).await, Ok(Ok(())))
}
