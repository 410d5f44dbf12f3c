//! Format version 1, which frames before goals were written in. Its layouts
//! are today's without the last field of `Register` and `Snapshot`, `goals`;
//! every other action is the same bytes. So a version 1 frame of those two
//! actions is read as today's with an empty goals list appended (one `0x00`),
//! which means goals from the metric names. This is also how the relay's
//! database rows of version 1 keep opening. (A second set of serde types for
//! the old layouts would do the same at the cost of 14 KB of wasm.)

use crate::{Action, Error};

/// Tags of the actions whose layout changed in version 2.
const REGISTER: u32 = 0;
const SNAPSHOT: u32 = 8;

/// Decodes the part after the version byte of a version 1 frame.
pub(crate) fn take(rest: &[u8]) -> Result<(u32, u32, Action), Error> {
    let tag = postcard::take_from_bytes::<(u32, u32, u32)>(rest).map(|((_, _, tag), _)| tag);
    if !matches!(tag, Ok(REGISTER | SNAPSHOT)) {
        return crate::codec::take(rest);
    }
    let mut buf = [0u8; crate::MAX_FRAME_LEN + 1];
    let with_goals = buf.get_mut(..rest.len() + 1).ok_or(Error::DecodeTooLong)?;
    with_goals[..rest.len()].copy_from_slice(rest);
    // The empty goals list, already 0 in `buf`.
    let (training_id, seq, mut action) = crate::codec::take(with_goals)?;
    if let Action::Snapshot(snapshot) = &mut action {
        // Version 1 kept a best for every metric; one without a goal has none now.
        if snapshot.is_consistent() {
            snapshot.default_goals();
        }
    }
    Ok((training_id, seq, action))
}
