//! The vector backend: messages fit 1 KiB, decode back to the same picture as
//! the raster backend, and diffs bring the watch to the same state as a full repaint.

mod scenarios;

use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use watchtrain_protocol::TrainingState;
use watchtrain_watch::vector::{self, DecodeError, Pool, MAX_MESSAGE_LEN};
use watchtrain_watch::{layout, render, Framebuffer, Screen, Theme};

const SCREENS: [Screen; 3] = [Screen::VERSA3, Screen::VERSA2, Screen::IONIC];

/// The stated tolerance: the same pixels, colours within the RGB565 rounding
/// (at most 4 per channel: 5-bit red and blue, 6-bit green).
const TOLERANCE: u8 = 4;

fn pool_picture(pool: &Pool, screen: Screen) -> Framebuffer {
    let mut fb = Framebuffer::new(screen.width, screen.height);
    pool.draw(&mut fb).unwrap();
    fb
}

/// The largest channel difference between two framebuffers, and how many pixels differ at all.
fn compare(a: &Framebuffer, b: &Framebuffer) -> (u8, usize) {
    assert_eq!((a.width(), a.height()), (b.width(), b.height()));
    let mut max = 0;
    let mut differing = 0;
    for (p, q) in a.data().chunks_exact(4).zip(b.data().chunks_exact(4)) {
        let d = p.iter().zip(q).map(|(x, y)| x.abs_diff(*y)).max().unwrap();
        max = max.max(d);
        differing += usize::from(d > 0);
    }
    (max, differing)
}

#[test]
fn full_repaints_fit_in_a_few_messages_and_match_the_raster() {
    for name in scenarios::NAMES {
        let state = scenarios::state(name).unwrap();
        for screen in SCREENS {
            let scene = layout(&state, screen, &Theme::dark());
            let messages = vector::encode(&scene, None);
            let bytes: usize = messages.iter().map(Vec::len).sum();
            assert!(
                messages.iter().all(|m| m.len() <= MAX_MESSAGE_LEN),
                "{name}"
            );
            assert!(
                messages.len() <= 3,
                "{name} {screen:?}: {} messages",
                messages.len()
            );
            println!(
                "{name} {}x{}: {} messages, {bytes} bytes",
                screen.width,
                screen.height,
                messages.len()
            );
            let mut pool = Pool::default();
            for m in &messages {
                pool.apply(m).unwrap();
            }
            let raster = render(&state, screen, &Theme::dark());
            let (max, _) = compare(&pool_picture(&pool, screen), &raster);
            assert!(
                max <= TOLERANCE,
                "{name} {screen:?}: channel difference {max}"
            );
        }
    }
}

#[test]
fn a_moved_element_is_caught_by_the_comparison() {
    let state = scenarios::state("mid_epoch").unwrap();
    let mut scene = layout(&state, Screen::VERSA3, &Theme::dark());
    let raster = render(&state, Screen::VERSA3, &Theme::dark());
    scene.lines[5].end.y += 3;
    let mut pool = Pool::default();
    for m in vector::encode(&scene, None) {
        pool.apply(&m).unwrap();
    }
    let (max, differing) = compare(&pool_picture(&pool, Screen::VERSA3), &raster);
    assert!(max > TOLERANCE && differing > 0);
}

#[test]
fn diffs_frame_by_frame_give_the_same_pool_as_a_full_repaint() {
    for name in ["mid_epoch", "nan_metric", "decimated_200", "long_names"] {
        let mut state = TrainingState::new();
        let mut shown = layout(&state, Screen::VERSA3, &Theme::dark());
        let mut pool = Pool::default();
        for m in vector::encode(&shown, None) {
            pool.apply(&m).unwrap();
        }
        let mut largest = 0;
        for frame in scenarios::frames(name).unwrap() {
            state.apply(&frame).unwrap();
            let scene = layout(&state, Screen::VERSA3, &Theme::dark());
            let messages = vector::encode(&scene, Some(&shown));
            largest = largest.max(messages.len());
            for m in &messages {
                assert!(m.len() <= MAX_MESSAGE_LEN);
                pool.apply(m).unwrap();
            }
            let mut fresh = Pool::default();
            for m in vector::encode(&scene, None) {
                fresh.apply(&m).unwrap();
            }
            assert_eq!(pool, fresh, "{name} after {frame:?}");
            shown = scene;
        }
        println!("{name}: largest diff {largest} messages");
    }
}

#[test]
fn a_batch_progress_update_is_one_small_message() {
    let state = scenarios::state("mid_epoch").unwrap();
    let before = layout(&state, Screen::VERSA3, &Theme::dark());
    let mut snapshot = state.as_snapshot().clone();
    snapshot.valid.done += 3;
    let state = TrainingState::try_from(snapshot).unwrap();
    let after = layout(&state, Screen::VERSA3, &Theme::dark());
    let messages = vector::encode(&after, Some(&before));
    assert_eq!(messages.len(), 1);
    assert!(messages[0].len() <= 40, "{} bytes", messages[0].len());
    assert!(vector::encode(&after, Some(&after)).is_empty());
}

#[test]
fn the_decoder_rejects_bad_messages() {
    let mut pool = Pool::default();
    assert_eq!(pool.apply(&[]), Err(DecodeError::BadVersion));
    assert_eq!(pool.apply(&[2, 1]), Err(DecodeError::BadVersion));
    assert_eq!(pool.apply(&[1, 9]), Err(DecodeError::BadOp));
    assert_eq!(pool.apply(&[1, 1, 0, 0]), Err(DecodeError::Truncated));
    assert_eq!(
        pool.apply(&[1, 1, 24, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0]),
        Err(DecodeError::BadId)
    );
    assert_eq!(
        pool.apply(&[1, 4, 0, 0, 0, 0, 0, 7]),
        Err(DecodeError::BadId)
    );
    assert_eq!(
        pool.apply(&[1, 2, 159, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        Err(DecodeError::BadId)
    );
    // The exact bytes of one rect: id 3 at (10, -2), 5x6, pure red.
    pool.apply(&[1, 1, 3, 10, 0, 0xfe, 0xff, 5, 0, 6, 0, 0x00, 0xf8])
        .unwrap();
    let r = pool.rects[3].clone().unwrap();
    assert_eq!(
        (r.rect.top_left, r.rect.size, r.color),
        (Point::new(10, -2), Size::new(5, 6), Rgb888::new(255, 0, 0))
    );
    assert_eq!(pool.visible(), (1, 1, 0, 0)); // the line before the bad id stays applied
    pool.apply(&[1, 5, 1, 0, 24, 5, 2, 0, 160]).unwrap();
    assert_eq!(pool.visible(), (0, 0, 0, 0));
}

/// A deterministic pseudo-random generator for the stress tests.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
    fn value(&mut self) -> f32 {
        match self.next() % 10 {
            0 => f32::NAN,
            1 => f32::INFINITY,
            2 => -1e30,
            3 => 1e-30,
            _ => (self.next() % 10_000) as f32 / 1000.0 - 2.0,
        }
    }
}

#[test]
fn layout_never_panics_and_the_worst_case_fits_four_messages() {
    use watchtrain_protocol::*;
    let mut rng = Lcg(7);
    let mut most = 0;
    for round in 0..60 {
        let mut state = TrainingState::new();
        let n = 1 + rng.next() as usize % MAX_METRICS;
        let metrics: MetricNames = (0..n)
            .map(|i| truncated(&format!("metric_{i}_{}_loss_with_a_long_name", rng.next())))
            .collect();
        let epochs = rng.next() % 400;
        state
            .apply(&Frame {
                training_id: 1,
                seq: 0,
                action: Action::Register(Register {
                    name: truncated("x\u{e9}\u{1F600}y"),
                    metrics,
                    epochs,
                    ..Default::default()
                }),
            })
            .unwrap();
        let count = rng.next() % 300;
        for e in 0..count {
            let values: Values = (0..n).map(|_| rng.value()).collect();
            let _ = state.apply(&Frame {
                training_id: 1,
                seq: 0,
                action: Action::Stats(Stats {
                    epoch: e * (1 + rng.next() % 3),
                    duration_ms: rng.next(),
                    values,
                }),
            });
        }
        let _ = state.apply(&Frame {
            training_id: 1,
            seq: 0,
            action: Action::Progress(Progress {
                phase: Phase::Valid,
                epoch: rng.next(),
                epochs: rng.next(),
                batch: rng.next(),
                batches: rng.next() % 3,
            }),
        });
        let w = [1, 100, 160, 200, 300, 336, 348, 800, 5000][round % 9];
        let h = [1, 90, 120, 250, 300, 336, 480, 600, 5000][(round / 2) % 9];
        let scene = layout(&state, Screen::new(w, h), &Theme::dark());
        let clamped = Screen::new(w, h).clamped();
        let mut fb = Framebuffer::new(clamped.width, clamped.height);
        scene.draw(&mut fb).unwrap();
        let messages = vector::encode(&scene, None);
        most = most.max(messages.len());
        assert!(messages.iter().all(|m| m.len() <= MAX_MESSAGE_LEN));
        let mut pool = Pool::default();
        for m in &messages {
            pool.apply(m).unwrap();
        }
    }
    println!("worst case: {most} messages");
    assert!(most <= 4, "{most} messages");
}

#[test]
fn rgb565_targets_get_the_same_picture() {
    struct Buf565(Vec<embedded_graphics::pixelcolor::Rgb565>);
    impl OriginDimensions for Buf565 {
        fn size(&self) -> Size {
            Size::new(336, 336)
        }
    }
    impl DrawTarget for Buf565 {
        type Color = embedded_graphics::pixelcolor::Rgb565;
        type Error = core::convert::Infallible;
        fn draw_iter<I: IntoIterator<Item = Pixel<Self::Color>>>(
            &mut self,
            pixels: I,
        ) -> Result<(), Self::Error> {
            for Pixel(p, c) in pixels {
                if (0..336).contains(&p.x) && (0..336).contains(&p.y) {
                    self.0[p.y as usize * 336 + p.x as usize] = c;
                }
            }
            Ok(())
        }
    }
    let state = scenarios::state("nan_metric").unwrap();
    let scene = layout(&state, Screen::VERSA3, &Theme::dark());
    let mut buf = Buf565(vec![Default::default(); 336 * 336]);
    scene.draw(&mut buf).unwrap();
    let fb = render(&state, Screen::VERSA3, &Theme::dark());
    for y in 0..336 {
        for x in 0..336 {
            let expected = embedded_graphics::pixelcolor::Rgb565::from(fb.pixel(x, y).unwrap());
            assert_eq!(buf.0[(y * 336 + x) as usize], expected, "({x}, {y})");
        }
    }
}
