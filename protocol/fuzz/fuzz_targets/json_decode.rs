//! Any bytes as legacy JSON: decode must not panic; what decodes must become
//! frames that apply and encode back to legacy JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use watchtrain_protocol::{json, TrainingState};

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = json::decode(data) else { return };
    let mut state = TrainingState::new();
    for frame in msg.to_frames(1, &state) {
        let _ = state.apply(&frame);
        let mut buf = [0u8; 2048];
        let _ = json::encode(&frame, &state, &mut buf);
        assert!(frame.to_bytes().is_ok());
    }
});
