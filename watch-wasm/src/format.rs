//! Numbers and durations as short, fixed-width-friendly text.

use heapless::String;

// One formatting of numbers and durations for every display (face and CLI).
pub use watchtrain_protocol::format::{duration, value};

/// `text` shortened to at most `max` characters: the middle is replaced by `~`
/// so that both the prefix (`valid_`) and the suffix (`_loss`) stay readable.
///
/// ```
/// use watchtrain_watch::format::elide;
/// assert_eq!(elide::<16>("valid_loss", 12), "valid_loss");
/// assert_eq!(elide::<16>("validation_top5_accuracy", 12), "valida~uracy");
/// ```
pub fn elide<const N: usize>(text: &str, max: usize) -> String<N> {
    let max = max.min(N);
    let count = text.chars().count();
    let mut out = String::new();
    if count <= max {
        for c in text.chars() {
            let _ = out.push(c);
        }
        return out;
    }
    if max == 0 {
        return out;
    }
    let head = max / 2;
    let tail = max - head - 1;
    for c in text.chars().take(head) {
        let _ = out.push(c);
    }
    let _ = out.push('~');
    for c in text.chars().skip(count - tail) {
        let _ = out.push(c);
    }
    out
}

/// `text` cut to at most `max` characters, the last one replaced by `~` when cut.
///
/// ```
/// use watchtrain_watch::format::cut;
/// assert_eq!(cut::<16>("resnet18", 12), "resnet18");
/// assert_eq!(cut::<16>("a very long training", 12), "a very long~");
/// ```
pub fn cut<const N: usize>(text: &str, max: usize) -> String<N> {
    let max = max.min(N);
    let mut out = String::new();
    if text.chars().count() <= max {
        for c in text.chars() {
            let _ = out.push(c);
        }
        return out;
    }
    for c in text.chars().take(max.saturating_sub(1)) {
        let _ = out.push(c);
    }
    if max > 0 {
        let _ = out.push('~');
    }
    out
}
