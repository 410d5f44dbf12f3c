//! The one error type of the crate.

use core::fmt;

/// What went wrong, named by the phase that found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Encoding needed more room than the buffer (or [`crate::MAX_FRAME_LEN`]) gives.
    EncodeBufferFull,
    /// A value could not be encoded (e.g. a string longer than its bound).
    EncodeFailed,
    /// The input was empty.
    DecodeEmpty,
    /// The input is longer than [`crate::MAX_FRAME_LEN`].
    DecodeTooLong,
    /// The first byte is not a format version this crate understands.
    DecodeUnsupportedVersion,
    /// The input ended in the middle of a frame.
    DecodeTruncated,
    /// A byte sequence that is not a valid frame (bad tag, varint, UTF-8, ...).
    DecodeMalformed,
    /// The action tag is not one this version knows.
    DecodeUnknownAction,
    /// A string or list is longer than its bound (or an enum value is unknown).
    DecodeOverCapacity,
    /// Bytes were left over after a complete frame.
    DecodeTrailingBytes,
    /// A snapshot whose parts do not agree with each other.
    DecodeInconsistentSnapshot,
    /// A stats frame whose value count differs from the registered metrics.
    ApplyMetricsMismatch,
    /// A frame meant for another training was applied to this state.
    ApplyWrongTraining,
    /// Legacy JSON that is not a JSON object or is cut short.
    JsonMalformed,
    /// Legacy JSON without an `"action"` key.
    JsonMissingAction,
    /// Legacy JSON with an action this crate does not know.
    JsonUnknownAction,
    /// Legacy JSON whose payload lacks a field or has one of the wrong type.
    JsonBadPayload,
    /// Legacy JSON longer than [`crate::MAX_LEGACY_JSON_LEN`].
    JsonTooLong,
    /// Legacy stats with more metrics than [`crate::MAX_METRICS`] or a name too long.
    JsonTooManyMetrics,
    /// This frame has no legacy JSON form.
    JsonNoLegacyForm,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::EncodeBufferFull => "encode: buffer full",
            Error::EncodeFailed => "encode: value cannot be encoded",
            Error::DecodeEmpty => "decode: empty frame",
            Error::DecodeTooLong => "decode: frame longer than 1024 bytes",
            Error::DecodeUnsupportedVersion => "decode: unsupported format version",
            Error::DecodeTruncated => "decode: frame truncated",
            Error::DecodeMalformed => "decode: malformed frame",
            Error::DecodeUnknownAction => "decode: unknown action",
            Error::DecodeOverCapacity => "decode: string or list over its bound",
            Error::DecodeTrailingBytes => "decode: trailing bytes after frame",
            Error::DecodeInconsistentSnapshot => "decode: inconsistent snapshot",
            Error::ApplyMetricsMismatch => "apply: stats values do not match registered metrics",
            Error::ApplyWrongTraining => "apply: frame belongs to another training",
            Error::JsonMalformed => "legacy json: malformed",
            Error::JsonMissingAction => "legacy json: missing \"action\"",
            Error::JsonUnknownAction => "legacy json: unknown action",
            Error::JsonBadPayload => "legacy json: payload missing a field or of the wrong type",
            Error::JsonTooLong => "legacy json: message too long",
            Error::JsonTooManyMetrics => "legacy json: too many metrics or name too long",
            Error::JsonNoLegacyForm => "legacy json: frame has no legacy form",
        })
    }
}

#[cfg(feature = "std")]
extern crate std;
#[cfg(feature = "std")]
impl std::error::Error for Error {}
