//! Golden images: every scenario on every watch screen, compared pixel for pixel
//! with `tests/golden/<scenario>_<w>x<h>.png`.
//!
//! On a mismatch the test writes `<name>.actual.png` beside the golden and fails.
//! `WATCHTRAIN_BLESS=1 cargo test -p watchtrain-watch --test golden` rewrites the
//! goldens: look at every one before committing it.

mod scenarios;

use std::path::PathBuf;

use watchtrain_watch::{render, Framebuffer, Screen, Theme};

const SCREENS: [Screen; 3] = [Screen::VERSA3, Screen::VERSA2, Screen::IONIC];
const DESKTOP: [(&str, Screen); 4] = [
    ("mid_epoch", Screen::new(800, 480)),
    ("lr_schedule", Screen::new(960, 540)),
    ("lr_schedule", Screen::new(1920, 1080)),
    ("decimated_200", Screen::new(1280, 720)),
];

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn check(name: &str, actual: &Framebuffer, failures: &mut Vec<String>) {
    let path = golden_dir().join(format!("{name}.png"));
    let actual_path = golden_dir().join(format!("{name}.actual.png"));
    if std::env::var_os("WATCHTRAIN_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, actual.to_png()).unwrap();
        let _ = std::fs::remove_file(&actual_path);
        return;
    }
    let expected = match std::fs::read(&path) {
        Ok(bytes) => Framebuffer::from_png(&bytes).unwrap(),
        Err(e) => {
            std::fs::write(&actual_path, actual.to_png()).unwrap();
            failures.push(format!(
                "{name}: no golden ({e}); wrote {}",
                actual_path.display()
            ));
            return;
        }
    };
    if expected.width() != actual.width() || expected.height() != actual.height() {
        std::fs::write(&actual_path, actual.to_png()).unwrap();
        failures.push(format!("{name}: size differs"));
        return;
    }
    let differing = expected
        .data()
        .chunks_exact(4)
        .zip(actual.data().chunks_exact(4))
        .filter(|(a, b)| a != b)
        .count();
    if differing > 0 {
        std::fs::write(&actual_path, actual.to_png()).unwrap();
        failures.push(format!(
            "{name}: {differing} pixels differ; see {}",
            actual_path.display()
        ));
    } else {
        let _ = std::fs::remove_file(&actual_path);
    }
}

#[test]
fn every_scenario_on_every_watch_screen_matches_its_golden() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for scenario in scenarios::NAMES {
        let state = scenarios::state(scenario).unwrap();
        for screen in SCREENS {
            let fb = render(&state, screen, &Theme::dark());
            check(
                &format!("{scenario}_{}x{}", screen.width, screen.height),
                &fb,
                &mut failures,
            );
            checked += 1;
        }
    }
    // Desktop-sized faces (the browser's large view, face.png): value axes and epoch
    // ticks, a learning rate on its own log axis, and text twice as large at 1920x1080.
    for (scenario, screen) in DESKTOP {
        let state = scenarios::state(scenario).unwrap();
        check(
            &format!("{scenario}_{}x{}", screen.width, screen.height),
            &render(&state, screen, &Theme::dark()),
            &mut failures,
        );
        checked += 1;
    }
    assert_eq!(
        checked,
        scenarios::NAMES.len() * SCREENS.len() + DESKTOP.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {checked} faces differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn a_changed_pixel_is_caught() {
    // The comparison itself must be able to fail.
    let state = scenarios::state("mid_epoch").unwrap();
    let fb = render(&state, Screen::VERSA3, &Theme::dark());
    let mut bytes = fb.to_png();
    let mut other = Framebuffer::from_png(&bytes).unwrap();
    assert_eq!(other, fb);
    let mut theme = Theme::dark();
    theme.metrics[0] = embedded_graphics::pixelcolor::Rgb888::new(1, 2, 3);
    other = render(&state, Screen::VERSA3, &theme);
    assert_ne!(other, fb);
    bytes.clear();
}
