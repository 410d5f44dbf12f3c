"""Fixtures: the real relay binary on a loopback port with its SQLite file in a temporary folder."""

from __future__ import annotations

import contextlib
import os
import pathlib
import select
import socket
import subprocess
import sys
import threading
import time
import urllib.error

import pytest

# Keras picks its backend at import: PyTorch, already installed for the other adapters.
os.environ.setdefault("KERAS_BACKEND", "torch")
# Nothing may be fetched from a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from relay_process import Relay  # noqa: E402

SRC = pathlib.Path(__file__).resolve().parents[1] / "src"


@pytest.fixture
def relay(tmp_path):
    r = Relay(tmp_path).start()
    yield r
    r.kill()


@pytest.fixture
def relay_factory(tmp_path):
    made = []

    def make(*args: str) -> Relay:
        folder = tmp_path / f"relay{len(made)}"
        folder.mkdir()
        r = Relay(folder, *args)
        made.append(r)
        return r

    yield make
    for r in made:
        r.kill()


def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except (OSError, urllib.error.URLError, KeyError) as e:
            last = e
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


@contextlib.contextmanager
def network_calls_on_this_thread():
    """Records every socket or select call the current thread makes inside the block.

    The training thread must make none: every wait for the relay belongs to the
    sender thread. A check that holds on any machine, unlike a wall-clock bound.
    """
    calls: list = []
    me = threading.current_thread()
    originals = {name: getattr(socket.socket, name) for name in ("connect", "connect_ex", "send", "sendall", "recv", "recv_into")}
    original_select = select.select

    def recording(name, original):
        def call(*args, **kwargs):
            if threading.current_thread() is me:
                calls.append(name)
            return original(*args, **kwargs)
        return call

    for name, original in originals.items():
        setattr(socket.socket, name, recording(name, original))
    select.select = recording("select", original_select)
    try:
        yield calls
    finally:
        for name, original in originals.items():
            setattr(socket.socket, name, original)
        select.select = original_select


def run_python(code: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Runs ``code`` in a fresh interpreter with the package on the path."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(SRC) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True, text=True, timeout=timeout)
