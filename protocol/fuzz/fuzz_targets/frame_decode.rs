//! Any bytes: decode must not panic; what decodes must re-encode, decode to the
//! same meaning, and apply to a state without breaking its invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;
use watchtrain_protocol::{Frame, TrainingState};

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = Frame::decode(data) else { return };
    let bytes = frame.to_bytes().expect("a decoded frame re-encodes");
    let again = Frame::decode(&bytes).expect("a re-encoded frame decodes");
    assert_eq!(format!("{again:?}"), format!("{frame:?}"));
    let mut state = TrainingState::new();
    let _ = state.apply(&frame);
    assert!(TrainingState::try_from(state.as_snapshot().clone()).is_ok());
    let _ = state.eta_ms();
    let _ = state.history_rows().count();
    assert!(state.to_snapshot(1).to_bytes().is_ok());
});
