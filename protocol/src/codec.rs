//! Frames to bytes and back: a version byte, then postcard.
//!
//! The byte layout is written down in `protocol/WIRE.md`. Encoding writes
//! [`FORMAT_VERSION`]; decoding also reads version 1 ([`crate::v1`]).

use crate::limits::{FORMAT_VERSION, MAX_FRAME_LEN};
use crate::{v1, Action, Error, Frame};

impl Frame {
    /// Encodes the frame into `buf` and returns the used part.
    ///
    /// ```
    /// use watchtrain_protocol::{Action, Frame, Phase, Progress};
    /// let frame = Frame {
    ///     training_id: 7,
    ///     seq: 42,
    ///     action: Action::Progress(Progress { phase: Phase::Valid, epoch: 2, epochs: 10, batch: 5, batches: 12 }),
    /// };
    /// let mut buf = [0u8; 64];
    /// let bytes = frame.encode(&mut buf)?;
    /// assert_eq!(bytes, &[2, 7, 42, 1, 1, 2, 10, 5, 12]);
    /// # Ok::<(), watchtrain_protocol::Error>(())
    /// ```
    pub fn encode<'b>(&self, buf: &'b mut [u8]) -> Result<&'b mut [u8], Error> {
        let limit = buf.len().min(MAX_FRAME_LEN);
        let (first, rest) = buf[..limit]
            .split_first_mut()
            .ok_or(Error::EncodeBufferFull)?;
        *first = FORMAT_VERSION;
        let used = postcard::to_slice(&(self.training_id, self.seq, &self.action), rest)
            .map_err(|e| match e {
                postcard::Error::SerializeBufferFull => Error::EncodeBufferFull,
                _ => Error::EncodeFailed,
            })?
            .len();
        Ok(&mut buf[..1 + used])
    }

    /// Encodes the frame into a fresh bounded buffer.
    pub fn to_bytes(&self) -> Result<heapless::Vec<u8, MAX_FRAME_LEN>, Error> {
        let mut buf = [0u8; MAX_FRAME_LEN];
        let used = self.encode(&mut buf)?.len();
        heapless::Vec::from_slice(&buf[..used]).map_err(|_| Error::EncodeBufferFull)
    }

    /// Decodes one whole frame. Never panics, never allocates: bad input is an [`Error`].
    ///
    /// ```
    /// use watchtrain_protocol::{Action, Error, Frame};
    /// let frame = Frame::decode(&[2, 7, 0, 5])?;
    /// assert_eq!(frame.action, Action::Heartbeat);
    /// // Version 1 still decodes.
    /// assert_eq!(Frame::decode(&[1, 7, 0, 5])?, frame);
    /// assert_eq!(Frame::decode(&[9, 7, 0, 5]), Err(Error::DecodeUnsupportedVersion));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn decode(bytes: &[u8]) -> Result<Frame, Error> {
        let (&version, rest) = bytes.split_first().ok_or(Error::DecodeEmpty)?;
        if bytes.len() > MAX_FRAME_LEN {
            return Err(Error::DecodeTooLong);
        }
        let (training_id, seq, action) = match version {
            FORMAT_VERSION => take(rest)?,
            1 => v1::take(rest)?,
            _ => return Err(Error::DecodeUnsupportedVersion),
        };
        // The one place wire data is checked: what decodes is consistent.
        if let Action::Snapshot(snapshot) = &action {
            if !snapshot.is_consistent() {
                return Err(Error::DecodeInconsistentSnapshot);
            }
        }
        Ok(Frame {
            training_id,
            seq,
            action,
        })
    }
}

/// Decodes `(training_id, seq, action)` of the current version, filling all of `rest`.
pub(crate) fn take(rest: &[u8]) -> Result<(u32, u32, Action), Error> {
    let (header, left): ((u32, u32, Action), _) =
        postcard::take_from_bytes(rest).map_err(|e| match e {
            postcard::Error::DeserializeUnexpectedEnd => Error::DecodeTruncated,
            postcard::Error::SerdeDeCustom if unknown_action(rest) => Error::DecodeUnknownAction,
            postcard::Error::SerdeDeCustom => Error::DecodeOverCapacity,
            _ => Error::DecodeMalformed,
        })?;
    if !left.is_empty() {
        return Err(Error::DecodeTrailingBytes);
    }
    Ok(header)
}

/// Number of [`Action`] variants: a tag at or past it is unknown.
const ACTIONS: u32 = 9;

/// True when the action tag after the two header varints is not a known action.
fn unknown_action(rest: &[u8]) -> bool {
    matches!(postcard::take_from_bytes::<(u32, u32, u32)>(rest), Ok(((_, _, tag), _)) if tag >= ACTIONS)
}
