"""The client: a training's connection to the relay, which never slows or breaks the training.

Everything the training calls returns at once: frames go through a bounded
in-memory buffer to a background sender thread that owns the WebSocket.

* Progress is coalesced: the training only overwrites "where I am"; the
  sender sends the latest value at most ``1 / progress_interval`` times a
  second, unsequenced (``seq`` 0: only the latest counts).
* Registration, stats, logs and the finish are numbered (``seq`` from 1) and
  kept until the relay has them: on every (re)connect the sender registers
  again, the relay answers ``Ack { seq: last_seq }``, and everything after
  ``last_seq`` is sent again (the relay dedupes by ``seq``). The buffer is
  bounded; past it the oldest frames already sent, then the oldest logs, go.
* Reconnects back off from 0.2 s to 30 s. A relay that is down, goes away or
  never answers costs the training a log line.
* A configuration error is said once, with the relay's reason, and not
  retried: a malformed URL raises ``ValueError`` at construction; a refused
  token (HTTP 401/403) or an untrusted certificate stops the sender.
* A frame is delivered once the relay acknowledges its ``seq`` (the relay
  acknowledges what it stored), not when it was written to the socket.
* In a multi-process training (DDP, ``torchrun``, Lightning with several
  devices) only the process of rank 0 reports; the others are no-op runs.
* :meth:`Run.close` (and an ``atexit`` hook) flushes with a short timeout.
"""

from __future__ import annotations

import atexit
import collections
import logging
import math
import os
import ssl
import sys
import threading
import time
import uuid
import weakref
import dataclasses
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence

from . import protocol as p
from .transport import Refused, RelayUrl, TransportError, WebSocket, relay_url

log = logging.getLogger("watchtrain")

DEFAULT_URL = "http://127.0.0.1:8555"
PRODUCE_PATH = "/v1/produce"
_OFF = ("0", "off", "none", "false", "disabled")
# Rank variables of torchrun / torch.distributed, Lightning, MPI (Horovod) and Slurm.
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID")
_live_runs: "weakref.WeakSet[Run]" = weakref.WeakSet()
_said: set = set()


def _say_once(key: str, msg: str, *args: Any) -> None:
    """A warning said once per process (several runs may share one misconfiguration)."""
    if key not in _said:
        _said.add(key)
        log.warning(msg, *args)


def checked_url(url: Optional[str]) -> Optional[RelayUrl]:
    """The relay of ``url``; ``None`` when sending is off (``off``, empty) or the URL is left to
    ``WATCHTRAIN_URL`` (``None``). A malformed URL raises ``ValueError`` saying what is wrong."""
    if url is None or not url.strip() or url.strip().lower() in _OFF:
        return None
    try:
        return relay_url(url)
    except ValueError as e:
        raise ValueError(f"watchtrain: {e}. The first argument is the relay URL; "
                         "the training's name is name=...") from None


def is_rank_zero() -> bool:
    """False in a process of rank other than 0 by any launcher's environment variable."""
    for variable in _RANK_VARIABLES:
        value = os.environ.get(variable, "").strip()
        if value.isdigit() and int(value) != 0:
            return False
    return True


def _default_name() -> str:
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    name = os.path.splitext(script)[0]
    return name if name and name not in ("-c", "-m", "ipykernel_launcher") else "training"


_GOAL_WORDS = {"min": "min", "minimize": "min", "max": "max", "maximize": "max", "none": "none", None: "none"}


def checked_goals(goals: Optional[Mapping[str, Optional[str]]]) -> Dict[str, str]:
    """``{metric: "min" | "max" | "none"}`` from ``goals=``; an unknown goal raises ``ValueError``.

    >>> checked_goals({"accuracy": "maximize", "lr": None})
    {'accuracy': 'max', 'lr': 'none'}
    """
    if goals is None:
        return {}
    if not isinstance(goals, Mapping):
        raise ValueError(f"watchtrain: goals must map metric names to goals, not {goals!r}")
    out = {}
    for name, goal in goals.items():
        word = _GOAL_WORDS.get(goal.lower() if isinstance(goal, str) else goal)
        if word is None:
            raise ValueError(f"watchtrain: the goal of {name!r} is {goal!r}: use 'min', 'max' or None")
        out[p.truncated(str(name), p.MAX_METRIC_NAME_LEN)] = word
    return out


def _goals_for(metrics: Sequence[str], declared: Dict[str, str]) -> List[str]:
    """The registration's goals: the declared ones by name, the others' defaults from their names
    (empty when nothing is declared, so the relay keeps what the training has)."""
    if not declared:
        return []
    return [declared.get(m) or p.goal_from_name(m) for m in metrics]


def _number(value: Any) -> float:
    """A float from a number, a 0-d tensor or array, or NaN for what is not a number."""
    try:
        if hasattr(value, "item"):
            value = value.item()
        return float(value)
    except (TypeError, ValueError, OverflowError, RuntimeError):
        return math.nan


class _Entry:
    """One numbered frame waiting for the relay."""

    __slots__ = ("seq", "action")

    def __init__(self, seq: int, action: p.Action):
        self.seq = seq  # 0 for an in-band re-registration
        self.action = action


class Run:
    """One training as the relay sees it.

    >>> import watchtrain
    >>> with watchtrain.Run("off", name="mnist", epochs=3) as run:  # "off": a no-op run
    ...     for epoch in run.epochs():
    ...         for batch in run.track(range(10)):
    ...             pass
    ...         run.log_epoch(epoch, train_loss=0.5, accuracy=0.9)

    The relay's URL comes first, as in every callback
    (``WatchtrainCallback("http://relay:8555")``); a malformed one raises
    ``ValueError`` here. Arguments fall back to the environment: ``url`` to ``WATCHTRAIN_URL``
    (then ``http://127.0.0.1:8555``; ``off`` disables sending, and so does an
    empty value, with a warning), ``token`` to
    ``WATCHTRAIN_TOKEN``, ``name`` to ``WATCHTRAIN_NAME`` (then the script's
    name), ``run_key`` to ``WATCHTRAIN_RUN_KEY`` (then a random key: pass the
    same key to continue a run after the training process restarts),
    ``ca_file`` to ``WATCHTRAIN_CA`` (a PEM file of the certificates to trust
    for an ``https://`` relay with its own certificate authority).
    ``primary`` says whether this process reports; by default only rank 0 does
    (the adapters pass their framework's answer, e.g. ``trainer.is_global_zero``).
    ``goals`` says which way metrics improve, e.g. ``{"accuracy": "max", "lr": None}``:
    ``"min"`` (or ``"minimize"``), ``"max"`` (``"maximize"``), ``None`` (``"none"``: no
    "best", as for a learning rate); a metric not named gets its default from its name
    (``loss``, ``err``, ``mae``...: min; ``acc``, ``f1``, ``auc``, ``iou``...: max; else none).
    Another goal raises ``ValueError`` here.
    """

    def __init__(
        self,
        url: Optional[str] = None,
        name: Optional[str] = None,
        metrics: Optional[Sequence[str]] = None,
        epochs: int = 0,
        batches: int = 0,
        *,
        primary: Optional[bool] = None,
        token: Optional[str] = None,
        run_key: Optional[str] = None,
        progress_interval: float = 0.25,
        buffer: int = 4096,
        timeout: float = 5.0,
        close_timeout: float = 2.0,
        ca_file: Optional[str] = None,
        goals: Optional[Mapping[str, Optional[str]]] = None,
    ):
        self._goals = checked_goals(goals)
        self.url = url if url is not None else os.environ.get("WATCHTRAIN_URL", DEFAULT_URL)
        self._relay = checked_url(self.url)
        if not self.url.strip():
            _say_once("empty", "watchtrain: the relay URL (WATCHTRAIN_URL) is empty: nothing is sent "
                      "(set it to http://host:port, or to off to silence this)")
        if primary is None:
            primary = is_rank_zero()
        self.enabled = self._relay is not None and bool(primary)
        self.token = token if token is not None else os.environ.get("WATCHTRAIN_TOKEN") or None
        self.ca_file = ca_file or os.environ.get("WATCHTRAIN_CA") or None
        name = name or os.environ.get("WATCHTRAIN_NAME") or _default_name()
        run_key = run_key or os.environ.get("WATCHTRAIN_RUN_KEY") or uuid.uuid4().hex[:16]
        self.progress_interval = progress_interval
        self.timeout = timeout
        self.close_timeout = close_timeout
        self._buffer_limit = max(16, buffer)
        self._metrics: List[str] = [p.truncated(m, p.MAX_METRIC_NAME_LEN) for m in (metrics or [])][: p.MAX_METRICS]
        self._register = p.Register(
            name=p.truncated(name, p.MAX_NAME_LEN),
            run_key=p.truncated(run_key, p.MAX_RUN_KEY_LEN),
            metrics=list(self._metrics),
            epochs=int(epochs or 0),
            batches=int(batches or 0),
            goals=_goals_for(self._metrics, self._goals),
        )
        self._epochs = int(epochs or 0)
        self._epoch = 0  # the current epoch, 0-based
        self._epoch_start = time.monotonic()
        self._lock = threading.Lock()
        self._pending: "collections.deque[_Entry]" = collections.deque()
        self._sent = 0  # the first _sent entries of _pending went out on the current connection
        self._seq = 0  # last seq given to a frame
        self._progress: Optional[list] = None  # [phase, epoch, epochs, batch, batches], overwritten by the training
        self._progress_before: Optional[list] = None  # the last progress of the phase before the current one
        self._training_id = 0  # assigned by the relay at the first registration
        self._acked = 0  # highest seq the relay said it has
        self._handshaken = False
        self._refused: Optional[str] = None  # a configuration error the relay (or TLS) gave: not retried
        self._finished = False
        self._closing = False
        self._closed = False
        self._dropped = 0
        self._warned: set = set()
        self._wake = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.connected = threading.Event()  # set while a registered connection is up (for tests and status)
        if self.enabled:
            self._thread = threading.Thread(target=self._run_sender, name="watchtrain-sender", daemon=True)
            self._thread.start()
            _live_runs.add(self)

    # --- what the training calls: never blocks, never raises ---------------

    @property
    def training_id(self) -> int:
        """The relay-assigned id, ``0`` until the first registration was answered."""
        return self._training_id

    @property
    def metrics(self) -> List[str]:
        """The registered metric names; stats values follow this order."""
        return list(self._metrics)

    @property
    def epoch(self) -> int:
        """The current epoch (0-based), as set by :meth:`epochs`, :meth:`set_epoch` or :meth:`log_epoch`."""
        return self._epoch

    def configure(self, *, name: Optional[str] = None, metrics: Optional[Sequence[str]] = None,
                  epochs: Optional[int] = None, batches: Optional[int] = None) -> None:
        """Changes what the training registered (e.g. once metric names are known); sends a new registration."""
        try:
            with self._lock:
                reg = self._register
                changed = False
                if name is not None and p.truncated(name, p.MAX_NAME_LEN) != reg.name:
                    reg = dataclasses.replace(reg, name=p.truncated(name, p.MAX_NAME_LEN))
                    changed = True
                if metrics is not None:
                    names = [p.truncated(str(m), p.MAX_METRIC_NAME_LEN) for m in metrics][: p.MAX_METRICS]
                    if names != list(reg.metrics):
                        self._metrics = names
                        reg = dataclasses.replace(reg, metrics=list(names), goals=_goals_for(names, self._goals))
                        changed = True
                if epochs is not None and int(epochs) != reg.epochs:
                    self._epochs = int(epochs)
                    reg = dataclasses.replace(reg, epochs=int(epochs))
                    changed = True
                if batches is not None and int(batches) != reg.batches:
                    reg = dataclasses.replace(reg, batches=int(batches))
                    changed = True
                if changed:
                    self._register = reg
                    if self.enabled and not self._closed:
                        self._push(0, reg)
            self._wake.set()
        except Exception as e:  # pragma: no cover - a bug here must not reach the training
            self._warn_once("configure", "watchtrain: configure failed: %r", e)

    def epochs(self, epochs: Optional[int] = None, start: int = 0) -> Iterator[int]:
        """``range(start, epochs)`` that also tells the run which epoch is current.

        Raises ``ValueError`` when the number of epochs is known neither here nor from ``Run(epochs=...)``.
        """
        if epochs is not None and epochs != self._epochs:
            self.configure(epochs=epochs)
        if self._epochs <= 0:
            raise ValueError("watchtrain: run.epochs() needs the number of epochs: "
                             "run.epochs(10), or Run(..., epochs=10)")
        return self._epoch_range(start)

    def _epoch_range(self, start: int) -> Iterator[int]:
        for epoch in range(start, self._epochs):
            self.set_epoch(epoch)
            yield epoch

    def set_epoch(self, epoch: int) -> None:
        """Starts epoch ``epoch`` (0-based): its duration is measured from now."""
        self._epoch = int(epoch)
        self._epoch_start = time.monotonic()

    def progress(self, batch: int, batches: int = 0, *, epoch: Optional[int] = None,
                 epochs: Optional[int] = None, phase: str = "train") -> None:
        """Where the training is: ``batch`` of ``batches`` done in ``phase`` of ``epoch``. Costs two stores."""
        old = self._progress
        if old is not None and old[0] == phase and (epoch is None or epoch == old[1]) and epochs is None:
            old[3] = batch  # the same phase of the same epoch: update in place
            old[4] = batches
            return
        cell = [phase, self._epoch if epoch is None else epoch, self._epochs if epochs is None else epochs, batch, batches]
        if old is not None and old[0] != phase:
            self._progress_before = old  # the other phase's last value is sent too
        self._progress = cell

    def track(self, iterable: Iterable, phase: str = "train", *, total: Optional[int] = None,
              epoch: Optional[int] = None) -> Iterator:
        """Yields the items of ``iterable`` and reports each one as a batch done, like ``tqdm``."""
        if total is None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except Exception:
                total = 0
        cell = [phase, self._epoch if epoch is None else epoch, self._epochs, 0, total]
        old = self._progress
        if old is not None and old[0] != phase:
            self._progress_before = old  # the other phase's last value is sent too
        self._progress = cell
        if not self.enabled:
            yield from iterable
            return
        for i, item in enumerate(iterable, 1):
            yield item
            cell[3] = i

    def log_epoch(self, epoch: Optional[int] = None, *, duration: Optional[float] = None, **metrics: Any) -> None:
        """The values of a finished epoch by name, e.g. ``log_epoch(3, train_loss=0.2, accuracy=0.9)``.

        The first call registers the names when none were given; later names not
        registered are ignored and registered names missing are sent as NaN.
        ``duration`` (seconds) defaults to the time since the epoch started.
        """
        try:
            if not self._metrics and metrics:
                self.configure(metrics=list(metrics))
            values = [_number(metrics.get(name, math.nan)) for name in self._metrics]
            unknown = [k for k in metrics if p.truncated(k, p.MAX_METRIC_NAME_LEN) not in self._metrics]
            if unknown:
                self._warn_once(("unknown",) + tuple(unknown), "watchtrain: metrics %s were not registered; ignored", unknown)
            self.stats(epoch, values, duration=duration)
        except Exception as e:  # pragma: no cover
            self._warn_once("log_epoch", "watchtrain: log_epoch failed: %r", e)

    def stats(self, epoch: Optional[int], values: Sequence[Any], *, duration: Optional[float] = None) -> None:
        """The values of a finished epoch, in the order of the registered metrics."""
        try:
            now = time.monotonic()
            epoch = self._epoch if epoch is None else int(epoch)
            if duration is None:
                duration = now - self._epoch_start
            row = [_number(v) for v in values][: p.MAX_METRICS]
            want = len(self._metrics)
            row = (row + [math.nan] * want)[:want]
            action = p.Stats(epoch, max(0, min(int(duration * 1000), 0xFFFFFFFF)), row)
            self._epoch = epoch + 1
            self._epoch_start = now
            self._enqueue(action)
        except Exception as e:  # pragma: no cover
            self._warn_once("stats", "watchtrain: stats failed: %r", e)

    def log(self, text: str, level: str = "info") -> None:
        """A log line for the watch and the dashboard (``level``: debug, info, warn, error)."""
        level = level if level in p.LEVELS else "info"
        self._enqueue(p.Log(level, p.truncated(str(text), p.MAX_LOG_LEN)))

    def heartbeat(self) -> None:
        """Tells the relay the training is alive without reporting anything."""
        self._enqueue(p.Heartbeat())

    def finish(self, outcome: str = "completed", reason: str = "", *, close: bool = True) -> None:
        """Reports the end of the training (``completed``, ``failed`` or ``cancelled``) and, by default, closes."""
        if self._finished:
            return
        self._finished = True
        outcome = outcome if outcome in p.OUTCOMES else "failed"
        self._enqueue(p.Finished(outcome, p.truncated(str(reason), p.MAX_REASON_LEN)))
        if close:
            self.close()

    def fail(self, error: BaseException) -> None:
        """Reports ``error`` as the end of the training: cancelled for ``KeyboardInterrupt``, failed otherwise.

        The finish carries a reason cut to fit its frame (:func:`reason_of`); when that
        cut something, an error log line carries the longer text.
        """
        outcome = "cancelled" if isinstance(error, KeyboardInterrupt) else "failed"
        reason, full = reason_of(error), _full_reason(error)
        if not self._finished and full != reason:
            self.log(full, level="error")
        self.finish(outcome, reason)

    def close(self, timeout: Optional[float] = None) -> bool:
        """Flushes what is buffered for at most ``timeout`` seconds and stops the sender.

        Returns True when everything was delivered. Never raises.
        """
        if self._closed:
            return not self._pending
        self._closing = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.close_timeout if timeout is None else timeout)
        self._closed = True
        _live_runs.discard(self)
        left = len(self._pending)
        if left and self.enabled:
            why = " (refused: see the error above)" if self._refused else ""
            log.warning("watchtrain: %d frame(s) not delivered to %s%s", left, self.url, why)
        return left == 0

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is not None:
            self.fail(exc)
        else:
            self.finish("completed")
        self.close()

    # --- the buffer --------------------------------------------------------

    def _warn_once(self, key: Any, msg: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(msg, *args)

    def _enqueue(self, action: p.Action) -> None:
        if not self.enabled or self._closed:
            return
        with self._lock:
            self._seq += 1
            self._push(self._seq, action)
        self._wake.set()

    def _push(self, seq: int, action: p.Action) -> None:
        """Appends under the lock, making room when the buffer is full."""
        pending = self._pending
        if len(pending) >= self._buffer_limit:
            if self._sent:
                pending.popleft()  # sent already: most likely at the relay
                self._sent -= 1
            else:
                victim = next((e for e in pending if isinstance(e.action, p.Log)), pending[0])
                pending.remove(victim)
                self._warn_once("dropped", "watchtrain: buffer full (%d frames), dropping the oldest", self._buffer_limit)
            self._dropped += 1
        pending.append(_Entry(seq, action))

    def _trim(self, acked: int) -> None:
        """Forgets the frames up to ``acked`` (under the lock)."""
        self._acked = max(self._acked, acked)
        pending = self._pending
        while pending and pending[0].seq <= acked and (pending[0].seq or self._sent):
            pending.popleft()
            if self._sent:
                self._sent -= 1

    # --- the sender thread -------------------------------------------------

    def _run_sender(self) -> None:
        ws: Optional[WebSocket] = None
        backoff = 0.2
        next_attempt = 0.0
        deadline: Optional[float] = None
        failures = 0
        last_progress: Optional[tuple] = None
        last_progress_at = 0.0
        while True:
            now = time.monotonic()
            if self._closing and deadline is None:
                deadline = now + self.close_timeout
            if deadline is not None and (now >= deadline or (ws is not None and self._flushed(last_progress))):
                break
            if ws is None:
                if now < next_attempt:
                    self._wake.wait(min(next_attempt - now, 0.25) if deadline is None else min(next_attempt - now, 0.05))
                    self._wake.clear()
                    continue
                try:
                    ws = self._connect()
                    if failures:
                        log.warning("watchtrain: connected to %s again (training %d)", self.url, self._training_id)
                    failures, backoff = 0, 0.2
                    last_progress = None
                except (Refused, ssl.SSLCertVerificationError) as e:
                    if isinstance(e, Refused) and not e.permanent:
                        failures += 1
                        if failures == 1:
                            log.warning("watchtrain: %s; retrying", e)
                        next_attempt = time.monotonic() + backoff
                        backoff = min(backoff * 2, 30.0)
                        continue
                    # A configuration error (token, path, certificate): said once, never retried.
                    self._refused = str(e)
                    log.error("watchtrain: %s: %s; nothing will be sent", self.url, e)
                    break
                except Exception as e:  # OSError, TransportError, a bad answer: all mean "try later"
                    failures += 1
                    if failures == 1:
                        log.warning("watchtrain: relay %s unreachable (%s); buffering and retrying", self.url, e)
                    else:
                        log.debug("watchtrain: reconnect %d failed: %s", failures, e)
                    next_attempt = time.monotonic() + backoff
                    backoff = min(backoff * 2, 30.0)
                    continue
            try:
                cell = self._progress
                if cell is not None:
                    snapshot = tuple(cell)
                    now = time.monotonic()
                    # The latest progress goes at most every progress_interval, and always just
                    # before numbered frames (so the last batch of an epoch shows before its stats).
                    unsent = self._has_unsent()
                    due = not self._finished and (deadline is not None or now - last_progress_at >= self.progress_interval)
                    if snapshot != last_progress and (due or unsent):
                        before = self._progress_before
                        if before is not None:
                            self._progress_before = None
                            if tuple(before) != last_progress:
                                ws.send(p.encode(self._progress_frame(tuple(before))))
                        ws.send(p.encode(self._progress_frame(snapshot)))
                        last_progress, last_progress_at = snapshot, now
                self._send_pending(ws)
                for message in ws.poll(0.0 if self._wake.is_set() else min(0.1, self.progress_interval)):
                    self._on_message(message)
                self._wake.clear()
            except Exception as e:
                log.warning("watchtrain: connection to %s lost (%s); buffering and retrying", self.url, e)
                ws.close()
                ws = None
                self.connected.clear()
                failures = 1
                next_attempt = time.monotonic() + backoff
                backoff = min(backoff * 2, 30.0)
        if ws is not None:
            self._goodbye(ws, deadline or time.monotonic() + 0.5)
        self.connected.clear()

    def _progress_frame(self, snapshot: tuple) -> p.Frame:
        phase, epoch, epochs, batch, batches = snapshot
        return p.Frame(self._training_id, 0, p.Progress(phase, int(epoch), int(epochs or 0), int(batch), int(batches or 0)))

    def _flushed(self, last_progress: Optional[tuple]) -> bool:
        """Nothing left: every numbered frame acknowledged, no progress newer than the last sent (unless finished)."""
        cell = self._progress
        progress_sent = self._finished or cell is None or tuple(cell) == last_progress
        return progress_sent and not self._pending

    def _has_unsent(self) -> bool:
        return self._sent < len(self._pending)

    def _connect(self) -> WebSocket:
        assert self._relay is not None  # the sender runs only for an enabled run
        ws = WebSocket(self._relay, PRODUCE_PATH, self.token, timeout=self.timeout, ca_file=self.ca_file)
        try:
            hello = p.Frame(self._training_id, 0, self._register)
            ws.send(p.encode(hello))
            give_up = time.monotonic() + self.timeout
            ack = None
            while ack is None:
                left = give_up - time.monotonic()
                if left <= 0:
                    raise TransportError("no answer to the registration")
                for message in ws.poll(left):
                    try:
                        frame = p.decode(message)
                    except p.DecodeError:
                        continue
                    if isinstance(frame.action, p.Ack) and ack is None:
                        ack = frame
            with self._lock:
                self._training_id = ack.training_id
                last = ack.action.seq
                if not self._handshaken:
                    # A new process for a run the relay knows: continue after its last seq.
                    numbered = [e for e in self._pending if e.seq]
                    if last and numbered and numbered[0].seq <= last:
                        for i, entry in enumerate(numbered):
                            entry.seq = last + 1 + i
                        self._seq = last + len(numbered)
                    elif last > self._seq:
                        self._seq = last
                    self._handshaken = True
                self._sent = 0
                self._trim(last)
            self.connected.set()
            return ws
        except BaseException:
            ws.close()
            raise

    def _send_pending(self, ws: WebSocket) -> None:
        while True:
            with self._lock:
                if self._sent >= len(self._pending):
                    return
                entry = self._pending[self._sent]
                frame = p.Frame(self._training_id, entry.seq, entry.action)
            try:
                data = p.encode(frame)
            except p.EncodeError as e:
                self._warn_once("encode", "watchtrain: cannot encode %r: %s", frame, e)
                data = None
            if data is not None:
                ws.send(data)
            with self._lock:
                # The entry is still at index _sent: only this thread sends, trims or resets,
                # and the training thread only appends (or drops sent entries, moving both).
                if self._sent < len(self._pending) and self._pending[self._sent] is entry:
                    if data is None or entry.seq == 0 or entry.seq <= self._acked:
                        del self._pending[self._sent]
                    else:
                        self._sent += 1

    def _on_message(self, message: bytes) -> None:
        try:
            frame = p.decode(message)
        except p.DecodeError:
            if message[:1] == b"{":  # the relay explains a rejected frame in JSON text
                text = message[:200].decode("utf-8", "replace")
                self._warn_once(("rejected", text), "watchtrain: the relay rejected a frame: %s", text)
            return
        if isinstance(frame.action, p.Ack) and (frame.training_id in (0, self._training_id)):
            with self._lock:
                self._trim(frame.action.seq)

    def _goodbye(self, ws: WebSocket, deadline: float) -> None:
        """Closes the WebSocket cleanly, reading the acknowledgements that come before the relay's close answer."""
        try:
            ws._send_frame(8, b"\x03\xe8", timeout=max(0.05, deadline - time.monotonic()))
            while time.monotonic() < deadline:
                for message in ws.poll(max(0.0, deadline - time.monotonic())):
                    self._on_message(message)
        except OSError:  # TransportError included: the close answer, or the end of the connection
            pass
        finally:
            ws.sock.close()


def _full_reason(error: BaseException) -> str:
    """The exception's type and the last line of its message (fastai, for one, puts where it happened first)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[-1] if lines else ""
    name = type(error).__name__
    return f"{name}: {text}" if text else name


def reason_of(error: BaseException, limit: int = p.MAX_REASON_LEN) -> str:
    """A reason for a finished frame, at most ``limit`` bytes: the exception's type, then
    the message's first sentence (``RuntimeError: CUDA out of memory.``), else its
    first words with an ellipsis.

    >>> reason_of(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.79 GiB total)"))
    'RuntimeError: CUDA out of memory.'
    >>> reason_of(ValueError("Expected input batch_size (64) to match target batch_size (32)"))
    'ValueError: Expected input batch_size…'
    """
    full = _full_reason(error)
    if len(full.encode("utf-8")) <= limit:
        return full
    name, _, text = full.partition(": ")
    if len(name.encode("utf-8")) + 6 > limit:
        return p.truncated(name, limit)
    sentence = text.split(". ")[0].rstrip(".") + "."
    candidate = f"{name}: {sentence}"
    if len(candidate.encode("utf-8")) <= limit:
        return candidate
    room = limit - len(f"{name}: ".encode("utf-8")) - len("…".encode("utf-8"))
    cut = p.truncated(text, room)
    mid_word = len(cut) < len(text) and text[len(cut)] != " "
    words = cut.rsplit(" ", 1)[0] if mid_word and " " in cut else cut
    return f"{name}: {words.rstrip(' ,;:(')}…"


def _close_all_at_exit() -> None:
    failed = getattr(sys, "last_value", None) or getattr(sys, "last_exc", None)
    for run in list(_live_runs):
        try:
            if not run._finished:
                if failed is not None:
                    run.fail(failed)
                else:
                    run.finish("completed")
            run.close()
        except Exception:  # pragma: no cover
            pass


atexit.register(_close_all_at_exit)

__all__ = ["Run", "reason_of", "is_rank_zero", "DEFAULT_URL"]
