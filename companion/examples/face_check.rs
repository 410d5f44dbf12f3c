//! The simulator test's judge (fitbit-app/test/sim.js runs it).
//!
//! Reads JSON on stdin: the relay's snapshot of a training (hex), every vector
//! message the fake watch received (hex, in order), and the elements the fake
//! watch's document shows. Prints JSON: whether the document equals the
//! watch face laid out natively from the snapshot, element by element, and
//! how far the face drawn from the received messages and the face drawn from
//! the document are from the native raster of that state. With `png` given,
//! writes `<png>.watch.png` (the document drawn) and `<png>.raster.png`.

use std::io::Read;

use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::Rectangle;
use serde_json::{json, Value};
use watchtrain_protocol::{Action, Frame, TrainingState};
use watchtrain_watch::icons::Icon;
use watchtrain_watch::scene::{ImageItem, LineItem, RectItem, TextItem};
use watchtrain_watch::{layout, render, vector, Anchor, Font, Framebuffer, Screen, Theme};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect()
}

fn int(v: &Value, key: &str) -> i32 {
    v[key].as_f64().unwrap_or(f64::NAN) as i32
}

fn color(v: &Value) -> Rgb888 {
    let s = v["fill"]
        .as_str()
        .unwrap_or("#000000")
        .trim_start_matches('#');
    let n = u32::from_str_radix(s, 16).unwrap_or(0);
    Rgb888::new((n >> 16) as u8, (n >> 8) as u8, n as u8)
}

/// The pool the fake watch's document shows.
fn document_pool(doc: &Value) -> vector::Pool {
    let mut pool = vector::Pool::default();
    let list = |k: &str| doc[k].as_array().cloned().unwrap_or_default();
    for (i, e) in list("rects").iter().enumerate() {
        if e.is_object() && i < pool.rects.len() {
            pool.rects[i] = Some(RectItem {
                rect: Rectangle::new(
                    Point::new(int(e, "x"), int(e, "y")),
                    Size::new(int(e, "width") as u32, int(e, "height") as u32),
                ),
                color: color(e),
            });
        }
    }
    for (i, e) in list("lines").iter().enumerate() {
        if e.is_object() && i < pool.lines.len() {
            pool.lines[i] = Some(LineItem {
                start: Point::new(int(e, "x1"), int(e, "y1")),
                end: Point::new(int(e, "x2"), int(e, "y2")),
                width: int(e, "strokeWidth") as u8,
                color: color(e),
            });
        }
    }
    for (i, e) in list("texts").iter().enumerate() {
        if e.is_object() && i < pool.texts.len() {
            let anchor = match e["textAnchor"].as_str() {
                Some("middle") => Anchor::Middle,
                Some("end") => Anchor::End,
                _ => Anchor::Start,
            };
            pool.texts[i] = Some(TextItem {
                pos: Point::new(int(e, "x"), int(e, "y")),
                text: watchtrain_protocol::truncated(e["text"].as_str().unwrap_or("")),
                font: Font::from_height(int(e, "fontSize") as u8),
                anchor,
                color: color(e),
            });
        }
    }
    for (i, e) in list("images").iter().enumerate() {
        if e.is_object() && i < pool.images.len() {
            let href = e["href"].as_str().unwrap_or("");
            if let Some(icon) = Icon::ALL
                .iter()
                .find(|icon| href == format!("icons/{}.png", icon.name()))
            {
                pool.images[i] = Some(ImageItem {
                    pos: Point::new(int(e, "x"), int(e, "y")),
                    icon: *icon,
                });
            }
        }
    }
    pool
}

fn draw(pool: &vector::Pool, screen: Screen) -> Framebuffer {
    let mut fb = Framebuffer::new(screen.width, screen.height);
    let _ = pool.draw(&mut fb);
    fb
}

fn max_difference(a: &Framebuffer, b: &Framebuffer) -> u8 {
    a.data()
        .iter()
        .zip(b.data())
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(255)
}

fn mismatches<T: std::fmt::Debug + PartialEq>(
    kind: &str,
    a: &[Option<T>],
    b: &[Option<T>],
    out: &mut Vec<String>,
) {
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if x != y {
            out.push(format!("{kind}{i}: watch {x:?} != face {y:?}"));
        }
    }
}

fn main() {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).expect("stdin");
    let input: Value = serde_json::from_str(&input).expect("JSON on stdin");
    let frame =
        Frame::decode(&hex(input["snapshot"].as_str().unwrap_or(""))).expect("a snapshot frame");
    let Action::Snapshot(snapshot) = frame.action else {
        panic!("not a snapshot: {:?}", frame.action)
    };
    let state = TrainingState::try_from(snapshot).expect("decoded snapshots are consistent");
    let screen = Screen::VERSA3;
    let scene = layout(&state, screen, &Theme::dark());
    let mut expected = vector::Pool::default();
    for m in vector::encode(&scene, None) {
        expected.apply(&m).expect("own encoding");
    }
    let mut received = vector::Pool::default();
    let mut bad_messages = 0;
    for m in input["messages"].as_array().cloned().unwrap_or_default() {
        if received.apply(&hex(m.as_str().unwrap_or(""))).is_err() {
            bad_messages += 1;
        }
    }
    let document = document_pool(&input["document"]);
    let mut diffs = Vec::new();
    mismatches("r", &document.rects, &expected.rects, &mut diffs);
    mismatches("l", &document.lines, &expected.lines, &mut diffs);
    mismatches("t", &document.texts, &expected.texts, &mut diffs);
    mismatches("i", &document.images, &expected.images, &mut diffs);
    let raster = render(&state, screen, &Theme::dark());
    let drawn_document = draw(&document, screen);
    let drawn_received = draw(&received, screen);
    if let Some(png) = input["png"].as_str() {
        let _ = std::fs::write(format!("{png}.watch.png"), drawn_document.to_png());
        let _ = std::fs::write(format!("{png}.raster.png"), raster.to_png());
    }
    let texts: Vec<&str> = expected
        .texts
        .iter()
        .flatten()
        .map(|t| t.text.as_str())
        .collect();
    println!(
        "{}",
        json!({
            "name": state.name().as_str(),
            "status": state.status().as_str(),
            "document_equals_face": diffs.is_empty(),
            "mismatches": diffs.iter().take(10).collect::<Vec<_>>(),
            "received_equals_face": received == expected,
            "bad_messages": bad_messages,
            "max_difference_document": max_difference(&drawn_document, &raster),
            "max_difference_received": max_difference(&drawn_received, &raster),
            "visible": expected.visible(),
            "texts": texts,
        })
    );
}
