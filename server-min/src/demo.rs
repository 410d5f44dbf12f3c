//! `--demo`: a simulated training sent through the producer session code that
//! serves `/v1/produce`, over an in-process channel instead of a socket.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Message;
use futures_channel::mpsc;
use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;
use watchtrain_protocol::{
    truncated, Action, Finished, Frame, MetricNames, Outcome, Phase, Progress, Register, Stats,
    Values,
};

use crate::hub::Hub;
use crate::ws::{self, ProducerKind};

/// Epochs of one simulated run.
const EPOCHS: u32 = 12;
/// Train batches per epoch.
const TRAIN_BATCHES: u32 = 60;
/// Valid batches per epoch.
const VALID_BATCHES: u32 = 15;
/// Metric names.
const METRICS: [&str; 3] = ["train_loss", "valid_loss", "accuracy"];

/// A deterministic noise source (no dependency, no NaN).
struct Noise(u64);

impl Noise {
    /// A value in [-1, 1).
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// The values of epoch `epoch`: losses falling towards a floor, accuracy rising, a little noise.
pub fn curves(epoch: u32, noise: &mut impl FnMut() -> f32) -> [f32; 3] {
    let e = epoch as f32;
    let train = 2.2 * (-e / 3.0).exp() + 0.18 + 0.02 * noise();
    let valid = 2.0 * (-e / 3.5).exp() + 0.26 + 0.004 * e + 0.03 * noise();
    let accuracy = (0.93 - 0.72 * (-e / 2.8).exp() + 0.01 * noise()).clamp(0.0, 1.0);
    [train, valid, accuracy]
}

/// Runs simulated trainings one after another until the relay stops.
pub async fn run(hub: Arc<Hub>) {
    let speed = if hub.config.demo_speed.is_finite() && hub.config.demo_speed > 0.0 {
        hub.config.demo_speed
    } else {
        1.0
    };
    // One epoch takes about 20 s at speed 1.
    let batch_wait =
        Duration::from_secs_f64(20.0 / f64::from(TRAIN_BATCHES + VALID_BATCHES) / speed);
    let mut noise = Noise(0x5eed);
    let started = crate::hub::now_ms() / 1000;
    for run in 1u32.. {
        let (to_relay, from_demo) = mpsc::channel::<Result<Message, axum::Error>>(64);
        let (to_demo, mut from_relay) = mpsc::unbounded::<Message>();
        let sink = to_demo.sink_map_err(axum::Error::new);
        let session = tokio::spawn(ws::produce(
            hub.clone(),
            sink,
            from_demo,
            ProducerKind::Binary,
        ));
        let mut to_relay = to_relay;
        let message = |frame: Frame| {
            let bytes = frame.to_bytes().map(|b| b.to_vec()).unwrap_or_default();
            Ok::<_, axum::Error>(Message::Binary(bytes.into()))
        };
        let metrics: MetricNames = METRICS.iter().map(|m| truncated(m)).collect();
        let register = Frame {
            training_id: 0,
            seq: 0,
            action: Action::Register(Register {
                name: truncated(&format!("demo run {run} (simulated)")),
                run_key: truncated(&format!("demo-{started}-{run}")),
                metrics,
                epochs: EPOCHS,
                batches: TRAIN_BATCHES,
                goals: Default::default(),
            }),
        };
        if to_relay.send(message(register)).await.is_err() {
            return;
        }
        // The relay's ack says where to continue numbering.
        let mut seq = loop {
            match from_relay.next().await {
                Some(Message::Binary(bytes)) => match Frame::decode(&bytes) {
                    Ok(Frame {
                        action: Action::Ack(ack),
                        ..
                    }) => break ack.seq,
                    _ => continue,
                },
                Some(Message::Text(text)) => {
                    tracing::warn!(%text, "demo registration refused");
                    return;
                }
                Some(_) => continue,
                None => return,
            }
        };
        // Later acks and errors from the relay: log the errors.
        let reader = tokio::spawn(async move {
            while let Some(msg) = from_relay.next().await {
                if let Message::Text(text) = msg {
                    tracing::warn!(%text, "demo frame refused");
                }
            }
        });
        tracing::info!(run, "demo training started");
        for epoch in 0..EPOCHS {
            let started = Instant::now();
            for (phase, batches) in [(Phase::Train, TRAIN_BATCHES), (Phase::Valid, VALID_BATCHES)] {
                for batch in 1..=batches {
                    tokio::time::sleep(batch_wait).await;
                    seq += 1;
                    let frame = Frame {
                        training_id: 0,
                        seq,
                        action: Action::Progress(Progress {
                            phase,
                            epoch,
                            epochs: EPOCHS,
                            batch,
                            batches,
                        }),
                    };
                    if to_relay.send(message(frame)).await.is_err() {
                        return;
                    }
                }
            }
            seq += 1;
            let values = curves(epoch, &mut || noise.next());
            let frame = Frame {
                training_id: 0,
                seq,
                action: Action::Stats(Stats {
                    epoch,
                    duration_ms: started.elapsed().as_millis() as u32,
                    values: Values::from_slice(&values).unwrap_or_default(),
                }),
            };
            if to_relay.send(message(frame)).await.is_err() {
                return;
            }
        }
        seq += 1;
        let done = Frame {
            training_id: 0,
            seq,
            action: Action::Finished(Finished {
                outcome: Outcome::Completed,
                reason: truncated("demo done"),
            }),
        };
        let _ = to_relay.send(message(done)).await;
        tracing::info!(run, "demo training finished; the next starts in a while");
        tokio::time::sleep(batch_wait * 60).await;
        drop(to_relay);
        let _ = session.await;
        reader.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curves_are_finite_and_improve() {
        let mut noise = Noise(1);
        let mut next = || noise.next();
        let first = curves(0, &mut next);
        let last = curves(EPOCHS - 1, &mut next);
        for epoch in 0..100 {
            assert!(curves(epoch, &mut next).iter().all(|v| v.is_finite()));
        }
        assert!(last[0] < first[0] && last[1] < first[1] && last[2] > first[2]);
    }
}
