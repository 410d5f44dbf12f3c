//! Metric values and durations as short text, the same on every display
//! (the watch face, the browser, the CLI).

use core::fmt::Write;
use heapless::String;

/// Short text for a metric value: about 4 significant digits, at most 8 characters.
///
/// ```
/// use watchtrain_protocol::format::value;
/// assert_eq!(value(0.123456), "0.1235");
/// assert_eq!(value(12.3456), "12.35");
/// assert_eq!(value(1234.5), "1234");
/// assert_eq!(value(123456.0), "1.23e5");
/// assert_eq!(value(0.0000123), "1.23e-5");
/// assert_eq!(value(f32::NAN), "NaN");
/// assert_eq!(value(f32::NEG_INFINITY), "-inf");
/// ```
pub fn value(v: f32) -> String<12> {
    let mut s = String::new();
    let a = v.abs();
    // Writing into a 12-byte string cannot fail for these formats.
    let _ = if v.is_nan() {
        s.push_str("NaN").map_err(|_| core::fmt::Error)
    } else if v.is_infinite() {
        s.push_str(if v > 0.0 { "inf" } else { "-inf" })
            .map_err(|_| core::fmt::Error)
    } else if a == 0.0 {
        s.push_str("0").map_err(|_| core::fmt::Error)
    } else if !(0.001..10_000.0).contains(&a) {
        scientific(&mut s, v)
    } else if a >= 1000.0 {
        write!(s, "{v:.0}")
    } else if a >= 100.0 {
        write!(s, "{v:.1}")
    } else if a >= 10.0 {
        write!(s, "{v:.2}")
    } else if a >= 1.0 {
        write!(s, "{v:.3}")
    } else {
        write!(s, "{v:.4}")
    };
    s
}

fn scientific(s: &mut String<12>, v: f32) -> core::fmt::Result {
    let mut exp = 0i32;
    let mut m = v.abs();
    while m >= 10.0 {
        m /= 10.0;
        exp += 1;
    }
    while m < 1.0 {
        m *= 10.0;
        exp -= 1;
    }
    // Round to 2 decimals; 9.999 becomes 10.00, renormalise.
    if (m * 100.0 + 0.5) as u32 >= 1000 {
        m /= 10.0;
        exp += 1;
    }
    let sign = if v < 0.0 { "-" } else { "" };
    write!(s, "{sign}{m:.2}e{exp}")
}

/// A duration as `1h05m`, `4m07s` or `12s`; days as `2d03h`.
///
/// ```
/// use watchtrain_protocol::format::duration;
/// assert_eq!(duration(12_400), "12s");
/// assert_eq!(duration(247_000), "4m07s");
/// assert_eq!(duration(3_900_000), "1h05m");
/// assert_eq!(duration(183_600_000), "2d03h");
/// ```
pub fn duration(ms: u64) -> String<12> {
    let mut s = String::new();
    let secs = ms / 1000;
    let (d, h, m, sec) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let _ = if d > 0 {
        write!(s, "{d}d{h:02}h")
    } else if h > 0 {
        write!(s, "{h}h{m:02}m")
    } else if m > 0 {
        write!(s, "{m}m{sec:02}s")
    } else {
        write!(s, "{sec}s")
    };
    s
}
