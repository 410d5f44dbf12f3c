//! A producer's side of the relay: registration handshake, numbered frames
//! kept until the relay acknowledges them, resend after a reconnect.
//!
//! Single-threaded and poll-driven: the caller pushes frames and calls
//! [`Producer::pump`] from its loop; nothing here blocks for longer than the
//! endpoint's timeout. A frame is delivered once the relay's `Ack` covers its
//! `seq` (the relay acknowledges what it has stored), never merely because it
//! was written to the socket.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tungstenite::Message;
use watchtrain_protocol::{Ack, Action, Frame, Register};

use crate::relay::{refusal_reason, Connection, Endpoint, Error};

/// Frames kept for the relay at most; past it the oldest already sent go first.
pub const BUFFER_LIMIT: usize = 4096;

/// One frame waiting for the relay.
#[derive(Debug)]
struct Entry {
    /// The producer sequence number, `0` for an unsequenced frame.
    seq: u32,
    /// What to send (the training id is filled in when sending).
    action: Action,
    /// Sent on the current connection.
    sent: bool,
}

/// What a [`Producer::pump`] found the link doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Connected: what was waiting is sent, acknowledgements are read.
    Up,
    /// Waiting for the next reconnect attempt.
    Waiting,
}

/// A training's producer side.
pub struct Producer {
    /// The relay.
    endpoint: Endpoint,
    /// The latest registration, sent on every (re)connect.
    register: Register,
    /// Assigned by the relay, `0` until the first handshake.
    training_id: u32,
    /// The last sequence number given to a frame.
    seq: u32,
    /// The highest `seq` the relay acknowledged.
    acked: u32,
    /// The first handshake is done (later ones only trim, never renumber).
    handshaken: bool,
    /// Frames the relay has not acknowledged yet, oldest first.
    pending: VecDeque<Entry>,
    /// The connection, when up.
    connection: Option<Connection>,
    /// No reconnect before this.
    next_attempt: Instant,
    /// The wait after the next failure.
    backoff: Duration,
    /// Failures since the last good connection (only the first is reported).
    failures: u32,
    /// The relay's reasons for frames it rejected, not yet taken by the caller.
    rejections: Vec<String>,
}

impl Producer {
    /// A producer that will register `register`; it connects on the first [`Producer::pump`].
    pub fn new(endpoint: Endpoint, register: Register) -> Self {
        Producer {
            endpoint,
            register,
            training_id: 0,
            seq: 0,
            acked: 0,
            handshaken: false,
            pending: VecDeque::new(),
            connection: None,
            next_attempt: Instant::now(),
            backoff: Duration::from_millis(200),
            failures: 0,
            rejections: Vec::new(),
        }
    }

    /// The relay-assigned id, `0` before the first handshake.
    pub fn training_id(&self) -> u32 {
        self.training_id
    }

    /// The highest sequence number the relay acknowledged.
    pub fn acked(&self) -> u32 {
        self.acked
    }

    /// Frames the relay has not acknowledged yet.
    pub fn backlog(&self) -> usize {
        self.pending.len()
    }

    /// The current registration.
    pub fn registration(&self) -> &Register {
        &self.register
    }

    /// Failures since the last good connection.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The relay's reasons for the frames it rejected since the last call.
    pub fn take_rejections(&mut self) -> Vec<String> {
        std::mem::take(&mut self.rejections)
    }

    /// Changes the registration and sends it in order with the other frames.
    pub fn reregister(&mut self, register: Register) {
        self.register = register.clone();
        self.enqueue(0, Action::Register(register));
    }

    /// Queues a numbered frame (stats, log, finished): it is sent until the relay acknowledges it.
    pub fn push(&mut self, action: Action) {
        self.seq += 1;
        self.enqueue(self.seq, action);
    }

    /// Queues an unsequenced frame (progress, heartbeat): sent once, in order.
    pub fn push_unsequenced(&mut self, action: Action) {
        self.enqueue(0, action);
    }

    fn enqueue(&mut self, seq: u32, action: Action) {
        if self.pending.len() >= BUFFER_LIMIT {
            let victim = self.pending.iter().position(|e| e.sent).unwrap_or(0);
            self.pending.remove(victim);
        }
        self.pending.push_back(Entry {
            seq,
            action,
            sent: false,
        });
    }

    fn trim(&mut self, acked: u32) {
        self.acked = self.acked.max(acked);
        while let Some(front) = self.pending.front() {
            if front.seq <= acked && (front.seq != 0 || front.sent) {
                self.pending.pop_front();
            } else {
                break;
            }
        }
    }

    /// Connects if due, sends what is waiting, reads acknowledgements and rejections.
    /// An error is returned once per failure; the link is retried on a later pump
    /// unless the error [is permanent](Error::is_permanent).
    pub fn pump(&mut self) -> Result<Link, Error> {
        if self.connection.is_none() {
            if Instant::now() < self.next_attempt {
                return Ok(Link::Waiting);
            }
            match self.handshake() {
                Ok(connection) => {
                    self.connection = Some(connection);
                    self.failures = 0;
                    self.backoff = Duration::from_millis(200);
                }
                Err(e) => {
                    self.failed();
                    return Err(e);
                }
            }
        }
        match self.send_and_read() {
            Ok(()) => Ok(Link::Up),
            Err(e) => {
                self.connection = None;
                self.failed();
                Err(e)
            }
        }
    }

    fn failed(&mut self) {
        self.failures += 1;
        self.next_attempt = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(Duration::from_secs(10));
    }

    fn frame_bytes(&self, seq: u32, action: Action) -> Result<Vec<u8>, Error> {
        let frame = Frame {
            training_id: self.training_id,
            seq,
            action,
        };
        // Every action the CLI builds fits a frame; a failure here is a bug worth naming.
        frame
            .to_bytes()
            .map(|b| b.to_vec())
            .map_err(|e| Error::Rejected {
                reason: format!("cannot encode the frame: {e}"),
            })
    }

    /// Reads one message: an `Ack` trims the buffer, JSON text is the relay's rejection.
    fn on_message(&mut self, message: Message) -> Option<(u32, u32)> {
        match message {
            Message::Binary(data) => match Frame::decode(&data) {
                Ok(Frame {
                    training_id,
                    action: Action::Ack(Ack { seq }),
                    ..
                }) => Some((training_id, seq)),
                _ => None,
            },
            Message::Text(text) => {
                let reason = refusal_reason(text.as_bytes()).unwrap_or_default();
                self.rejections.push(reason);
                None
            }
            _ => None,
        }
    }

    fn handshake(&mut self) -> Result<Connection, Error> {
        let mut connection = self.endpoint.connect("/v1/produce")?;
        connection.send(self.frame_bytes(0, Action::Register(self.register.clone()))?)?;
        let give_up = Instant::now() + self.endpoint.timeout;
        let (id, last) = loop {
            if Instant::now() >= give_up {
                return Err(Error::Timeout {
                    what: "no answer to the registration",
                    after: self.endpoint.timeout,
                });
            }
            if let Some(message) = connection.read()? {
                if let Some(ack) = self.on_message(message) {
                    break ack;
                }
                if let Some(reason) = self.rejections.pop() {
                    return Err(Error::Rejected { reason });
                }
            }
        };
        self.training_id = id;
        if !self.handshaken {
            // A new process for a run the relay knows: continue after its last seq.
            let first = self.pending.iter().find(|e| e.seq != 0).map(|e| e.seq);
            if last != 0 && first.is_some_and(|f| f <= last) {
                let mut next = last;
                for entry in self.pending.iter_mut().filter(|e| e.seq != 0) {
                    next += 1;
                    entry.seq = next;
                }
                self.seq = next;
            } else {
                self.seq = self.seq.max(last);
            }
            self.handshaken = true;
        }
        for entry in self.pending.iter_mut() {
            entry.sent = false;
        }
        self.trim(last);
        connection.set_read_timeout(Duration::from_millis(1))?;
        Ok(connection)
    }

    fn send_and_read(&mut self) -> Result<(), Error> {
        let mut i = 0;
        while i < self.pending.len() {
            if !self.pending[i].sent {
                let bytes =
                    self.frame_bytes(self.pending[i].seq, self.pending[i].action.clone())?;
                let connection = self.connection.as_mut().ok_or(Error::Closed {
                    reason: String::new(),
                })?;
                connection.send(bytes)?;
                if self.pending[i].seq == 0 {
                    self.pending.remove(i);
                    continue;
                }
                self.pending[i].sent = true;
            }
            i += 1;
        }
        loop {
            let connection = self.connection.as_mut().ok_or(Error::Closed {
                reason: String::new(),
            })?;
            let Some(message) = connection.read()? else {
                return Ok(());
            };
            if let Some((_, seq)) = self.on_message(message) {
                self.trim(seq);
            }
        }
    }

    /// Pumps until the relay has acknowledged every numbered frame (and every
    /// unsequenced one is sent), then closes the connection cleanly.
    ///
    /// Fails at once on a [permanent](Error::is_permanent) error or a rejected
    /// frame; otherwise, after `timeout`, with the last error seen (or a timeout).
    pub fn flush(&mut self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        let mut last_error = None;
        loop {
            match self.pump() {
                Ok(Link::Up) if self.pending.is_empty() => break,
                Ok(_) => {}
                Err(e) if e.is_permanent() => return Err(e),
                Err(e) => last_error = Some(e),
            }
            if let Some(reason) = self.rejections.pop() {
                return Err(Error::Rejected { reason });
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(last_error.unwrap_or(Error::Timeout {
                    what: "not acknowledged by the relay",
                    after: timeout,
                }));
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(10)));
        }
        if let Some(connection) = self.connection.take() {
            connection.close(Duration::from_millis(200));
        }
        Ok(())
    }
}
