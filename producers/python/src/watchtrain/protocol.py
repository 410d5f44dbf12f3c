"""The Watchtrain wire format in pure Python: frames to bytes and back.

A frame is one version byte (``FORMAT_VERSION``) followed by the postcard
encoding of ``(training_id, seq, action)``, exactly as the Rust crate
``watchtrain-protocol`` writes it (``protocol/src/frame.rs``, ``codec.rs``;
version 1 frames, without goals, still decode):

* ``u32`` / ``u64``: unsigned LEB128 varints (at most 5 / 10 bytes);
* enum variants: a varint tag (the variant's index) then the variant's fields;
* ``f32``: 4 bytes little-endian; strings: varint length then UTF-8;
* lists: varint count then the items; ``Option``: ``0`` or ``1`` then the value.

Decoding never raises anything but :class:`DecodeError`, whose ``kind`` is
the Rust crate's error name (``"DecodeTruncated"``, ...), so the test vectors'
reject list can be checked by name.

>>> frame = Frame(7, 42, Progress(phase="valid", epoch=2, epochs=10, batch=5, batches=12))
>>> list(encode(frame))
[2, 7, 42, 1, 1, 2, 10, 5, 12]
>>> decode(bytes([2, 7, 0, 5]))
Frame(training_id=7, seq=0, action=Heartbeat())
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple, Union

FORMAT_VERSION = 2
MAX_FRAME_LEN = 1024
MAX_METRICS = 8
MAX_NAME_LEN = 32
MAX_METRIC_NAME_LEN = 24
MAX_RUN_KEY_LEN = 32
MAX_LOG_LEN = 96
MAX_REASON_LEN = 40
HISTORY_VALUES = 128

PHASES = ("train", "valid")
LEVELS = ("debug", "info", "warn", "error")
OUTCOMES = ("completed", "failed", "cancelled")
STATUSES = ("waiting", "running", "stalled", "completed", "failed", "cancelled")
GOALS = ("none", "min", "max")

_MINIMIZED = ("loss", "err", "mse", "mae", "rmse", "perplexity", "wer", "cer")
_MAXIMIZED = ("acc", "f1", "auc", "auroc", "precision", "recall", "iou", "dice", "bleu", "rouge")

_F32 = struct.Struct("<f")


class EncodeError(ValueError):
    """A frame that cannot be encoded; ``kind`` is the Rust error name."""

    def __init__(self, kind: str, detail: str = ""):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


class DecodeError(ValueError):
    """Bytes that are not a valid frame; ``kind`` is the Rust error name."""

    def __init__(self, kind: str, detail: str = ""):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


def truncated(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes at a character boundary (like the crate's ``truncated``)."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[:limit].decode("utf-8", errors="ignore")


def goal_from_name(name: str) -> str:
    """The default goal of a metric from its name (``"min"``, ``"max"`` or ``"none"``), as the
    crate's ``Goal::from_name``; ``protocol/vectors/goals.json`` checks that they agree.

    >>> goal_from_name("val_loss"), goal_from_name("top1-accuracy"), goal_from_name("lr")
    ('min', 'max', 'none')
    """
    low = "".join(c.lower() if c.isascii() else c for c in name)  # ASCII case only, as in Rust
    if any(w in low for w in _MINIMIZED):
        return "min"
    # By word, at its start or end (``val_acc``, ``mIoU``), so that ``previous`` is no ``iou``.
    words = "".join(c if c.isascii() and c.isalnum() else " " for c in low).split()
    if any(w.startswith(m) or w.endswith(m) for w in words for m in _MAXIMIZED):
        return "max"
    return "none"


# --- actions -----------------------------------------------------------------


@dataclass
class Register:
    """A training's registration (action tag 0)."""

    name: str = ""
    run_key: str = ""
    metrics: Sequence[str] = ()
    epochs: int = 0
    batches: int = 0
    goals: Sequence[str] = ()  # one of GOALS per metric; missing ones (all, when empty) from the names


@dataclass
class Progress:
    """Batch progress within an epoch (tag 1); ``phase`` is ``"train"`` or ``"valid"``."""

    phase: str = "train"
    epoch: int = 0
    epochs: int = 0
    batch: int = 0
    batches: int = 0


@dataclass
class Stats:
    """The values of one finished epoch (tag 2), aligned to the registered metrics."""

    epoch: int = 0
    duration_ms: int = 0
    values: Sequence[float] = ()


@dataclass
class Log:
    """A log line (tag 3); ``level`` is one of ``LEVELS``."""

    level: str = "info"
    text: str = ""


@dataclass
class Finished:
    """The end of a training (tag 4); ``outcome`` is one of ``OUTCOMES``."""

    outcome: str = "completed"
    reason: str = ""


@dataclass
class Heartbeat:
    """The producer is alive (tag 5)."""


@dataclass
class Stalled:
    """Made by the relay: nothing came for too long (tag 6)."""


@dataclass
class Ack:
    """The relay's acknowledgement: every frame up to ``seq`` is applied (tag 7)."""

    seq: int = 0


@dataclass
class Bar:
    """Batch progress of one phase."""

    done: int = 0
    total: int = 0


@dataclass
class Best:
    """The best value a metric reached, and when."""

    epoch: int = 0
    value: float = math.nan


@dataclass
class Snapshot:
    """The relay's whole state of one training (tag 8). Field order is the wire order."""

    name: str = ""
    metrics: List[str] = field(default_factory=list)
    epochs: int = 0
    status: str = "waiting"
    reason: str = ""
    epoch: int = 0
    phase: str = "train"
    train: Bar = field(default_factory=Bar)
    valid: Bar = field(default_factory=Bar)
    stride: int = 1
    history: List[float] = field(default_factory=list)
    latest_epoch: Optional[int] = None
    latest: List[float] = field(default_factory=list)
    best: List[Best] = field(default_factory=list)
    elapsed_ms: int = 0
    timed_epochs: int = 0
    last_seq: int = 0
    goals: List[str] = field(default_factory=list)

    def check(self) -> None:
        """Raises ``DecodeError("DecodeInconsistentSnapshot")`` when the parts disagree (like ``TrainingState::check``)."""
        width = len(self.metrics)
        capacity = HISTORY_VALUES // max(width, 1)
        stride = self.stride
        consistent = (
            stride > 0
            and stride & (stride - 1) == 0
            and (width == 0 or len(self.history) % width == 0)
            and (width != 0 or not self.history)
            and (not self.latest or len(self.latest) == width)
            and (not self.best or len(self.best) == width)
            and (not self.goals or len(self.goals) == width)
            and len(self.history) // max(width, 1) <= capacity
        )
        if not consistent:
            raise DecodeError("DecodeInconsistentSnapshot")


Action = Union[Register, Progress, Stats, Log, Finished, Heartbeat, Stalled, Ack, Snapshot]
_TAGS = {Register: 0, Progress: 1, Stats: 2, Log: 3, Finished: 4, Heartbeat: 5, Stalled: 6, Ack: 7, Snapshot: 8}


@dataclass
class Frame:
    """One unit on the wire: which training, which producer sequence number, what happened."""

    training_id: int
    seq: int
    action: Action


# --- encoding ----------------------------------------------------------------


def _varint(out: bytearray, value: int, bits: int = 32) -> None:
    if not 0 <= value < (1 << bits):
        raise EncodeError("EncodeFailed", f"{value} is not a u{bits}")
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _str(out: bytearray, text: str, limit: int) -> None:
    raw = truncated(str(text), limit).encode("utf-8")
    _varint(out, len(raw))
    out += raw


def _f32(out: bytearray, value: float) -> None:
    try:
        out += _F32.pack(value)
    except OverflowError:  # a finite double beyond f32's range rounds to an infinity, as in Rust
        out += _F32.pack(math.inf if value > 0 else -math.inf)


def _floats(out: bytearray, values: Sequence[float]) -> None:
    if len(values) > MAX_METRICS:
        raise EncodeError("EncodeFailed", f"{len(values)} values, at most {MAX_METRICS}")
    _varint(out, len(values))
    for v in values:
        _f32(out, float(v))


def _index(choices: Tuple[str, ...], value: str) -> int:
    try:
        return choices.index(value)
    except ValueError:
        raise EncodeError("EncodeFailed", f"{value!r} is not one of {choices}") from None


def _goals(out: bytearray, goals: Sequence[str]) -> None:
    if len(goals) > MAX_METRICS:
        raise EncodeError("EncodeFailed", f"{len(goals)} goals, at most {MAX_METRICS}")
    _varint(out, len(goals))
    for g in goals:
        out.append(_index(GOALS, g))


def _action(out: bytearray, action: Action) -> None:
    tag = _TAGS.get(type(action))
    if tag is None:
        raise EncodeError("EncodeFailed", f"not an action: {action!r}")
    out.append(tag)  # every tag is below 0x80: one varint byte
    if tag == 0:
        _str(out, action.name, MAX_NAME_LEN)
        _str(out, action.run_key, MAX_RUN_KEY_LEN)
        if len(action.metrics) > MAX_METRICS:
            raise EncodeError("EncodeFailed", f"{len(action.metrics)} metrics, at most {MAX_METRICS}")
        _varint(out, len(action.metrics))
        for m in action.metrics:
            _str(out, m, MAX_METRIC_NAME_LEN)
        _varint(out, action.epochs)
        _varint(out, action.batches)
        _goals(out, action.goals)
    elif tag == 1:
        out.append(_index(PHASES, action.phase))
        _varint(out, action.epoch)
        _varint(out, action.epochs)
        _varint(out, action.batch)
        _varint(out, action.batches)
    elif tag == 2:
        _varint(out, action.epoch)
        _varint(out, action.duration_ms)
        _floats(out, action.values)
    elif tag == 3:
        out.append(_index(LEVELS, action.level))
        _str(out, action.text, MAX_LOG_LEN)
    elif tag == 4:
        out.append(_index(OUTCOMES, action.outcome))
        _str(out, action.reason, MAX_REASON_LEN)
    elif tag == 7:
        _varint(out, action.seq)
    elif tag == 8:
        s = action
        _str(out, s.name, MAX_NAME_LEN)
        if len(s.metrics) > MAX_METRICS:
            raise EncodeError("EncodeFailed", "too many metrics")
        _varint(out, len(s.metrics))
        for m in s.metrics:
            _str(out, m, MAX_METRIC_NAME_LEN)
        _varint(out, s.epochs)
        out.append(_index(STATUSES, s.status))
        _str(out, s.reason, MAX_REASON_LEN)
        _varint(out, s.epoch)
        out.append(_index(PHASES, s.phase))
        for bar in (s.train, s.valid):
            _varint(out, bar.done)
            _varint(out, bar.total)
        _varint(out, s.stride)
        if len(s.history) > HISTORY_VALUES:
            raise EncodeError("EncodeFailed", "history too long")
        _varint(out, len(s.history))
        for v in s.history:
            _f32(out, float(v))
        if s.latest_epoch is None:
            out.append(0)
        else:
            out.append(1)
            _varint(out, s.latest_epoch)
        _floats(out, s.latest)
        if len(s.best) > MAX_METRICS:
            raise EncodeError("EncodeFailed", "too many bests")
        _varint(out, len(s.best))
        for b in s.best:
            _varint(out, b.epoch)
            _f32(out, float(b.value))
        _varint(out, s.elapsed_ms, 64)
        _varint(out, s.timed_epochs)
        _varint(out, s.last_seq)
        _goals(out, s.goals)


def encode(frame: Frame) -> bytes:
    """The frame's bytes. Strings longer than their bound are cut at a character
    boundary; lists over their bound and frames over ``MAX_FRAME_LEN`` raise :class:`EncodeError`."""
    out = bytearray((FORMAT_VERSION,))
    _varint(out, frame.training_id)
    _varint(out, frame.seq)
    _action(out, frame.action)
    if len(out) > MAX_FRAME_LEN:
        raise EncodeError("EncodeBufferFull", f"{len(out)} bytes, at most {MAX_FRAME_LEN}")
    return bytes(out)


# --- decoding ----------------------------------------------------------------


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int):
        self.data = data
        self.pos = pos

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise DecodeError("DecodeTruncated")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def take(self, n: int) -> bytes:
        if n > len(self.data) - self.pos:
            raise DecodeError("DecodeTruncated")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def varint(self, bits: int = 32) -> int:
        # postcard: at most ceil(bits/7) bytes; the last one may only carry the remaining bits.
        max_bytes = (bits + 6) // 7
        last_max = (1 << (bits - 7 * (max_bytes - 1))) - 1
        out = 0
        for i in range(max_bytes):
            b = self.byte()
            out |= (b & 0x7F) << (7 * i)
            if not b & 0x80:
                if i == max_bytes - 1 and b > last_max:
                    raise DecodeError("DecodeMalformed", "varint overflows")
                return out
        raise DecodeError("DecodeMalformed", "varint too long")

    def length(self) -> int:
        return self.varint(64)  # a usize on a 64-bit host

    def tag(self, count: int, unknown: str = "DecodeOverCapacity") -> int:
        # An unknown enum value is a serde "custom" error in the crate, reported as over capacity;
        # an unknown action tag has its own error.
        tag = self.varint()
        if tag >= count:
            raise DecodeError(unknown, f"unknown variant {tag}")
        return tag

    def string(self, limit: int) -> str:
        raw = self.take(self.length())
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError("DecodeMalformed", "bad UTF-8") from None
        if len(raw) > limit:
            raise DecodeError("DecodeOverCapacity", f"string of {len(raw)} bytes, at most {limit}")
        return text

    def f32(self) -> float:
        return _F32.unpack(self.take(4))[0]

    def items(self, limit: int, item):
        # heapless::Vec decodes item by item and fails on the first one past its capacity.
        count = self.length()
        out = []
        for _ in range(count):
            value = item()
            if len(out) == limit:
                raise DecodeError("DecodeOverCapacity", f"more than {limit} items")
            out.append(value)
        return out


def _read_goals(r: _Reader, version: int) -> List[str]:
    # Version 1 had no goals: empty, the defaults from the names.
    if version == 1:
        return []
    return r.items(MAX_METRICS, lambda: GOALS[r.tag(3)])


def _read_action(r: _Reader, version: int) -> Action:
    tag = r.tag(9, "DecodeUnknownAction")
    if tag == 0:
        name = r.string(MAX_NAME_LEN)
        run_key = r.string(MAX_RUN_KEY_LEN)
        metrics = r.items(MAX_METRICS, lambda: r.string(MAX_METRIC_NAME_LEN))
        return Register(name, run_key, metrics, r.varint(), r.varint(), _read_goals(r, version))
    if tag == 1:
        phase = PHASES[r.tag(2)]
        return Progress(phase, r.varint(), r.varint(), r.varint(), r.varint())
    if tag == 2:
        epoch = r.varint()
        duration = r.varint()
        return Stats(epoch, duration, r.items(MAX_METRICS, r.f32))
    if tag == 3:
        level = LEVELS[r.tag(4)]
        return Log(level, r.string(MAX_LOG_LEN))
    if tag == 4:
        outcome = OUTCOMES[r.tag(3)]
        return Finished(outcome, r.string(MAX_REASON_LEN))
    if tag == 5:
        return Heartbeat()
    if tag == 6:
        return Stalled()
    if tag == 7:
        return Ack(r.varint())
    s = Snapshot()
    s.name = r.string(MAX_NAME_LEN)
    s.metrics = r.items(MAX_METRICS, lambda: r.string(MAX_METRIC_NAME_LEN))
    s.epochs = r.varint()
    s.status = STATUSES[r.tag(6)]
    s.reason = r.string(MAX_REASON_LEN)
    s.epoch = r.varint()
    s.phase = PHASES[r.tag(2)]
    s.train = Bar(r.varint(), r.varint())
    s.valid = Bar(r.varint(), r.varint())
    s.stride = r.varint()
    s.history = r.items(HISTORY_VALUES, r.f32)
    option = r.byte()
    if option == 1:
        s.latest_epoch = r.varint()
    elif option != 0:
        raise DecodeError("DecodeMalformed", "bad option tag")
    s.latest = r.items(MAX_METRICS, r.f32)
    s.best = r.items(MAX_METRICS, lambda: Best(r.varint(), r.f32()))
    s.elapsed_ms = r.varint(64)
    s.timed_epochs = r.varint()
    s.last_seq = r.varint()
    s.goals = _read_goals(r, version)
    if version == 1:
        # As the crate: goals from the names, and no best for a metric without one.
        s.goals = [goal_from_name(m) for m in s.metrics]
        s.best = [Best() if g == "none" else b for b, g in zip(s.best, s.goals)]
    return s


def decode(data: bytes) -> Frame:
    """Decodes one whole frame; anything else raises :class:`DecodeError` (never another exception)."""
    data = bytes(data)
    if not data:
        raise DecodeError("DecodeEmpty")
    if len(data) > MAX_FRAME_LEN:
        raise DecodeError("DecodeTooLong")
    if data[0] not in (1, FORMAT_VERSION):
        raise DecodeError("DecodeUnsupportedVersion")
    r = _Reader(data, 1)
    training_id = r.varint()
    seq = r.varint()
    action = _read_action(r, data[0])
    if r.pos != len(data):
        raise DecodeError("DecodeTrailingBytes")
    if isinstance(action, Snapshot):
        action.check()
    return Frame(training_id, seq, action)
