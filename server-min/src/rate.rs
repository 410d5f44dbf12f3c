//! Rate limits (`--max-fps`): a token bucket per WebSocket producer, and for
//! HTTP producers one per client address and one per training, so neither a
//! new path id nor a new address gets a fresh allowance.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A token bucket: `rate` frames a second, bursts up to one second's worth.
pub struct Bucket {
    /// Frames per second.
    rate: f64,
    /// Frames that may go now.
    tokens: f64,
    /// When `tokens` was last refilled.
    last: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn new(rate: u32) -> Bucket {
        let rate = f64::from(rate.max(1));
        Bucket {
            rate,
            tokens: rate,
            last: Instant::now(),
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        self.tokens =
            (self.tokens + (now - self.last).as_secs_f64() * self.rate).min(self.rate.max(1.0));
        self.last = now;
    }

    /// Whether `n` tokens are there now (refilled first).
    fn has(&mut self, n: usize) -> bool {
        self.refill();
        self.tokens >= n as f64
    }

    /// Whether it has refilled to a whole second's worth.
    fn is_full(&mut self) -> bool {
        self.refill();
        self.tokens >= self.rate
    }

    /// Takes one token, waiting for it if needed (so a fast producer is slowed, not dropped).
    pub async fn take(&mut self) {
        self.refill();
        if self.tokens < 1.0 {
            let wait = (1.0 - self.tokens) / self.rate;
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
            self.refill();
        }
        self.tokens -= 1.0;
    }
}

/// Keys remembered per map; past it the keys whose bucket is full again are forgotten
/// (a full bucket is what a new key gets anyway), so the maps stay bounded.
const MAX_KEYS: usize = 4096;

/// The HTTP producers' buckets.
pub struct Limits {
    /// Frames per second, per address and per training.
    rate: u32,
    /// Both maps under one lock, so a request takes from both or from neither.
    buckets: Mutex<(HashMap<IpAddr, Bucket>, HashMap<u32, Bucket>)>,
}

impl Limits {
    /// No bucket yet: each starts full.
    pub fn new(rate: u32) -> Limits {
        Limits {
            rate,
            buckets: Mutex::new((HashMap::new(), HashMap::new())),
        }
    }

    /// Takes `n` frames from the address's and the training's buckets, if both have them.
    pub fn try_take(&self, addr: Option<IpAddr>, training: u32, n: usize) -> bool {
        let mut guard = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (by_addr, by_training) = &mut *guard;
        let rate = self.rate;
        let ok = addr.is_none_or(|a| bucket(by_addr, a, rate).has(n))
            && bucket(by_training, training, rate).has(n);
        if ok {
            if let Some(a) = addr {
                bucket(by_addr, a, rate).tokens -= n as f64;
            }
            bucket(by_training, training, rate).tokens -= n as f64;
        }
        ok
    }
}

/// The bucket of `key`, made full when new; forgets full buckets when the map is large.
fn bucket<K: Hash + Eq + Copy>(map: &mut HashMap<K, Bucket>, key: K, rate: u32) -> &mut Bucket {
    if map.len() >= MAX_KEYS && !map.contains_key(&key) {
        map.retain(|_, b| !b.is_full());
    }
    map.entry(key).or_insert_with(|| Bucket::new(rate))
}
