//! The MQTT bridge (`--mqtt mqtt://[user:password@]host[:port]/prefix`):
//! every training's state, retained, under `<prefix>/<id>/state` (on each
//! epoch and status change, at most about once a second per training), its
//! events under `<prefix>/<id>/event`, the relay's availability under
//! `<prefix>/status` (`online`, and `offline` as the MQTT last will), and Home
//! Assistant discovery configs, so trainings show up there as sensors.
//!
//! The broker may be down: the client (rumqttc) reconnects by itself, and the
//! bridge republishes every retained state and config after each connect.
//! Publishing never waits: a full client queue drops the message (counted).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use percent_encoding::percent_decode_str;
use rumqttc::{
    AsyncClient, Event, LastWill, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration, Transport,
};
use serde_json::{json, Value};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::hub::Hub;
use crate::notify::{finite, Change, Counters, Facts, Notice};

/// The shortest time between two retained states of one training (status changes go at once).
const STATE_EVERY: Duration = Duration::from_secs(1);
/// Messages the client queues while the broker is slow or down.
const CLIENT_QUEUE: usize = 512;
/// The longest wait between two connection attempts.
const MAX_RECONNECT_WAIT: Duration = Duration::from_secs(10);

/// A parsed `--mqtt` URL.
#[derive(Debug, Clone)]
pub struct Broker {
    /// Host name or address.
    host: String,
    /// Port (1883, or 8883 for `mqtts`).
    port: u16,
    /// True for `mqtts://`.
    tls: bool,
    /// A CA certificate file to trust besides the system's (`?ca=/path.pem`), for a private broker.
    ca: Option<PathBuf>,
    /// User and password from the URL's user info.
    credentials: Option<(String, String)>,
    /// The topic prefix (the URL's path), `watchtrain` by default.
    prefix: String,
    /// Home Assistant's discovery prefix (`?discovery=`), `homeassistant` by default; empty for none.
    discovery: String,
}

impl Broker {
    /// Parses `mqtt://[user:password@]host[:port][/prefix][?ca=FILE&discovery=PREFIX]`
    /// (`mqtts://` for TLS). Errors never repeat the password.
    pub fn parse(url: &str) -> Result<Broker, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| "expected mqtt://host[:port]/prefix".to_owned())?;
        let tls = match scheme {
            "mqtt" | "tcp" => false,
            "mqtts" | "ssl" => true,
            other => {
                return Err(format!(
                    "unknown scheme `{other}` (use mqtt:// or mqtts://)"
                ))
            }
        };
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        let credentials = userinfo.map(|u| match u.split_once(':') {
            Some((user, password)) => (decode(user), decode(password)),
            None => (decode(u), String::new()),
        });
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = match hostport.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6
                    .split_once(']')
                    .ok_or_else(|| "an IPv6 address needs its closing `]`".to_owned())?;
                (host, after.strip_prefix(':'))
            }
            None => match hostport.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (hostport, None),
            },
        };
        let port = match port {
            Some(p) => p.parse().map_err(|_| format!("`{p}` is not a port"))?,
            None => default_port,
        };
        if host.is_empty() {
            return Err("no broker host".into());
        }
        let prefix = decode(path.trim_matches('/'));
        if prefix.contains(['+', '#']) {
            return Err(format!("the topic prefix `{prefix}` has MQTT wildcards"));
        }
        let mut broker = Broker {
            host: host.to_owned(),
            port,
            tls,
            ca: None,
            credentials,
            prefix: if prefix.is_empty() {
                "watchtrain".into()
            } else {
                prefix
            },
            discovery: "homeassistant".into(),
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "ca" => broker.ca = Some(PathBuf::from(decode(value))),
                "discovery" => broker.discovery = decode(value).trim_matches('/').to_owned(),
                other => return Err(format!("unknown option `{other}` (use ca= or discovery=)")),
            }
        }
        Ok(broker)
    }

    /// The topic of the relay's availability.
    fn status_topic(&self) -> String {
        format!("{}/status", self.prefix)
    }

    /// The client options: last will, credentials, TLS.
    fn options(&self) -> Result<MqttOptions, String> {
        // Unique per relay process, so two relays never kick each other off the broker.
        let client_id = format!(
            "watchtrain-relay-{}-{}",
            std::process::id(),
            crate::hub::now_ms() % 1_000_000
        );
        let mut options = MqttOptions::new(client_id, self.host.clone(), self.port);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_last_will(LastWill::new(
            self.status_topic(),
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
        if let Some((user, password)) = &self.credentials {
            options.set_credentials(user.clone(), password.clone());
        }
        if self.tls {
            let ca = match &self.ca {
                Some(path) => Some(
                    std::fs::read(path).map_err(|e| format!("CA file {}: {e}", path.display()))?,
                ),
                None => None,
            };
            let config = crate::notify::web::client_tls(ca.as_deref())?;
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::new(config),
            )));
        }
        Ok(options)
    }
}

/// The running bridge.
pub struct Bridge {
    /// Publishes what the hub reports.
    publisher: JoinHandle<()>,
    /// Drives the client's connection.
    connection: JoinHandle<()>,
    /// Tells the publisher to say `offline` and disconnect.
    stop: watch::Sender<bool>,
}

impl Bridge {
    /// Says `offline` to the broker and disconnects (waiting at most a second), then stops.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        let _ = tokio::time::timeout(Duration::from_secs(1), self.publisher).await;
        self.connection.abort();
    }
}

/// Starts the bridge for `hub`; `dashboard` is the relay's base URL for links.
pub fn start(broker: Broker, hub: Arc<Hub>, dashboard: String) -> Result<Bridge, String> {
    let (client, mut eventloop) = AsyncClient::new(broker.options()?, CLIENT_QUEUE);
    tracing::info!(broker = %format!("{}:{}", broker.host, broker.port), prefix = %broker.prefix, tls = broker.tls, "MQTT bridge starting");
    let counters = hub.outlet.counters.clone();
    let (connected_tx, connected) = watch::channel(0u64);
    let connection = tokio::spawn({
        let counters = counters.clone();
        async move {
            let mut wait = Duration::from_millis(250);
            let mut connects = 0u64;
            let mut closing = false;
            let mut outage = false;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        tracing::info!("MQTT broker connected");
                        counters.mqtt_connected.store(1, Ordering::Relaxed);
                        outage = false;
                        wait = Duration::from_millis(250);
                        connects += 1;
                        connected_tx.send_replace(connects);
                    }
                    // Our own goodbye (`Bridge::stop`): the broker closing next is no outage.
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => closing = true,
                    Ok(_) => {}
                    Err(_) if closing => {
                        counters.mqtt_connected.store(0, Ordering::Relaxed);
                        return;
                    }
                    Err(e) => {
                        // Said once per outage; the retries that follow are quiet.
                        if !std::mem::replace(&mut outage, true) {
                            tracing::warn!(error = %e, "MQTT broker unreachable; retrying");
                        }
                        counters.mqtt_connected.store(0, Ordering::Relaxed);
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(MAX_RECONNECT_WAIT);
                    }
                }
            }
        }
    });
    let (stop, stopped) = watch::channel(false);
    let publisher = tokio::spawn(publish(
        Publisher {
            client,
            broker,
            hub: hub.clone(),
            dashboard,
            counters,
            trainings: HashMap::new(),
        },
        hub.outlet.subscribe(),
        connected,
        stopped,
    ));
    Ok(Bridge {
        publisher,
        connection,
        stop,
    })
}

/// What the bridge remembers of one training.
struct Seen {
    /// The latest state JSON and whether it still has to go out.
    state: String,
    /// True when `state` was not published yet (rate limit).
    pending: bool,
    /// When a state was last published.
    sent_at: Option<Instant>,
    /// The status in the last published state.
    status: &'static str,
    /// Whether its discovery configs went out on this connection.
    announced: bool,
}

/// The publishing side of the bridge.
struct Publisher {
    /// The MQTT client.
    client: AsyncClient,
    /// Where and under which prefix.
    broker: Broker,
    /// For the states to republish after a reconnect.
    hub: Arc<Hub>,
    /// The relay's base URL.
    dashboard: String,
    /// For `/metrics`.
    counters: Arc<Counters>,
    /// Every training seen, by id.
    trainings: HashMap<u32, Seen>,
}

async fn publish(
    mut p: Publisher,
    mut changes: broadcast::Receiver<Arc<Change>>,
    mut connected: watch::Receiver<u64>,
    mut stopped: watch::Receiver<bool>,
) {
    // What the relay holds already goes out with every connect (`Publisher::connected`).
    let mut tick = tokio::time::interval(STATE_EVERY / 4);
    loop {
        tokio::select! {
            change = changes.recv() => match change {
                Ok(change) => {
                    p.update(&change);
                    if let Some(event) = change.event {
                        let notice = Notice::new(event, &change, &p.dashboard);
                        let topic = format!("{}/{}/event", p.broker.prefix, change.id);
                        p.send(topic, false, notice.json().to_string());
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    p.counters.lagged.fetch_add(n, Ordering::Relaxed);
                    // Catch up from the hub's current states instead.
                    for (id, state, updated_ms) in p.hub.list() {
                        p.update(&Change::current(id, updated_ms, state));
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            Ok(()) = connected.changed() => p.connected(),
            _ = tick.tick() => p.flush(),
            _ = stopped.changed() => {
                p.send(p.broker.status_topic(), true, "offline".into());
                let _ = p.client.disconnect().await;
                // Let the connection task write both before it is stopped.
                tokio::time::sleep(Duration::from_millis(200)).await;
                return;
            }
        }
    }
}

impl Publisher {
    /// Hands one message to the client, or counts it dropped.
    fn send(&self, topic: String, retain: bool, payload: String) {
        match self
            .client
            .try_publish(topic, QoS::AtLeastOnce, retain, payload)
        {
            Ok(()) => self.counters.mqtt_published.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.counters.mqtt_dropped.fetch_add(1, Ordering::Relaxed),
        };
    }

    /// After each connect: online, then every config and state again (retained),
    /// for the trainings the relay holds now.
    fn connected(&mut self) {
        self.send(self.broker.status_topic(), true, "online".into());
        let held = self.hub.list();
        self.trainings
            .retain(|id, _| held.iter().any(|(held_id, ..)| held_id == id));
        for seen in self.trainings.values_mut() {
            seen.announced = false;
        }
        for (id, state, updated_ms) in held {
            self.update(&Change::current(id, updated_ms, state));
            self.flush_one(id);
        }
    }

    /// Takes a training's new state; publishes it now if its status changed.
    fn update(&mut self, change: &Change) {
        let facts = Facts::of(change, &self.dashboard);
        let status = facts.status.as_str();
        let state = state_json(&facts).to_string();
        let seen = self.trainings.entry(change.id).or_insert(Seen {
            state: String::new(),
            pending: false,
            sent_at: None,
            status,
            announced: false,
        });
        let urgent = seen.status != status;
        seen.state = state;
        seen.pending = true;
        seen.status = status;
        if !seen.announced {
            seen.announced = true;
            for (topic, config) in discovery(&self.broker, &facts) {
                self.send(topic, true, config.to_string());
            }
        }
        if urgent {
            self.flush_one(change.id);
        }
    }

    /// Publishes the pending states whose last publish is old enough.
    fn flush(&mut self) {
        let due: Vec<u32> = self
            .trainings
            .iter()
            .filter(|(_, s)| s.pending && s.sent_at.is_none_or(|t| t.elapsed() >= STATE_EVERY))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.flush_one(id);
        }
    }

    fn flush_one(&mut self, id: u32) {
        if let Some(seen) = self.trainings.get_mut(&id) {
            seen.pending = false;
            seen.sent_at = Some(Instant::now());
            let payload = seen.state.clone();
            self.send(format!("{}/{id}/state", self.broker.prefix), true, payload);
        }
    }
}

/// The retained state: the facts plus progress, ETA and the main metric, flat for templates.
fn state_json(f: &Facts) -> Value {
    let mut map = f.to_json();
    let progress = if f.status.is_finished() {
        Some(100.0)
    } else if f.epochs > 0 {
        Some((f64::from(f.epochs_done) * 100.0 / f64::from(f.epochs)).min(100.0))
    } else {
        None
    };
    map.insert(
        "progress".into(),
        json!(progress.map(|p| (p * 10.0).round() / 10.0)),
    );
    map.insert("eta_s".into(), json!(f.eta_ms.map(|ms| ms / 1000)));
    let main = f.main_metric();
    map.insert(
        "main_metric".into(),
        json!(main.map(|i| f.metrics[i].clone())),
    );
    let value = main.and_then(|i| f.latest.get(i)).copied();
    map.insert("main_value".into(), value.map_or(Value::Null, finite));
    map.insert("updated_ms".into(), json!(f.updated_ms));
    Value::Object(map)
}

/// Home Assistant discovery configs for one training: status, epoch, progress, ETA, main metric.
fn discovery(broker: &Broker, f: &Facts) -> Vec<(String, Value)> {
    if broker.discovery.is_empty() {
        return Vec::new();
    }
    let node = format!("watchtrain_{}_{}", slug(&broker.prefix), f.id);
    let state_topic = format!("{}/{}/state", broker.prefix, f.id);
    let device = json!({
        "identifiers": [node],
        "name": f.name,
        "manufacturer": "Watchtrain",
        "model": "training",
        "configuration_url": f.link,
    });
    let main = f.main_metric().map(|i| f.metrics[i].clone());
    let mut sensors = vec![
        (
            "status",
            "Status".to_owned(),
            "{{ value_json.status }}",
            json!({}),
        ),
        (
            "epoch",
            "Epoch".to_owned(),
            "{{ value_json.epoch }}",
            json!({"state_class": "measurement"}),
        ),
        (
            "progress",
            "Progress".to_owned(),
            "{{ value_json.progress }}",
            json!({"unit_of_measurement": "%", "state_class": "measurement"}),
        ),
        (
            "eta",
            "ETA".to_owned(),
            "{{ value_json.eta_s }}",
            json!({"unit_of_measurement": "s", "device_class": "duration"}),
        ),
    ];
    if let Some(name) = main {
        sensors.push((
            "metric",
            name,
            "{{ value_json.main_value }}",
            json!({"state_class": "measurement"}),
        ));
    }
    sensors
        .into_iter()
        .map(|(key, name, template, extra)| {
            let mut config = json!({
                "name": name,
                "unique_id": format!("{node}_{key}"),
                "state_topic": state_topic,
                "value_template": template,
                "availability_topic": broker.status_topic(),
                "device": device,
            });
            if let (Some(config), Value::Object(extra)) = (config.as_object_mut(), extra) {
                config.extend(extra);
            }
            (
                format!("{}/sensor/{node}_{key}/config", broker.discovery),
                config,
            )
        })
        .collect()
}

/// Letters, digits and `_` only: what Home Assistant ids may hold.
fn slug(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        let b = Broker::parse("mqtt://lab:s%3Acret@broker.lan/lab/trainings").unwrap();
        assert_eq!(
            (b.host.as_str(), b.port, b.tls),
            ("broker.lan", 1883, false)
        );
        assert_eq!(b.credentials, Some(("lab".into(), "s:cret".into())));
        assert_eq!(b.prefix, "lab/trainings");
        assert_eq!(b.discovery, "homeassistant");
        let b = Broker::parse("mqtts://127.0.0.1:18883?ca=/tmp/ca.pem&discovery=").unwrap();
        assert_eq!(
            (b.port, b.tls, b.prefix.as_str()),
            (18883, true, "watchtrain")
        );
        assert_eq!(b.ca, Some(PathBuf::from("/tmp/ca.pem")));
        assert_eq!(b.discovery, "");
        let b = Broker::parse("mqtt://[::1]:1884/p").unwrap();
        assert_eq!((b.host.as_str(), b.port), ("::1", 1884));
        let e = Broker::parse("mqtt://u:hunter2@host:x/p").unwrap_err();
        assert!(e.contains("not a port") && !e.contains("hunter2"), "{e}");
        assert!(Broker::parse("http://host/p").is_err());
        assert!(Broker::parse("mqtt://host/a/#").is_err());
    }
}
