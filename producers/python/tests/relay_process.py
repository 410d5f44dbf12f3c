"""A real relay process on a loopback port, for the tests and the benchmark."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import ssl
import subprocess
import time
import urllib.request

REPO = pathlib.Path(__file__).resolve().parents[3]


def relay_binary() -> pathlib.Path:
    """The relay binary: $WATCHTRAIN_RELAY_BIN, else target/debug/watchtrain-relay (built when missing)."""
    explicit = os.environ.get("WATCHTRAIN_RELAY_BIN")
    if explicit:
        return pathlib.Path(explicit)
    path = REPO / "target" / "debug" / "watchtrain-relay"
    if not path.exists():
        subprocess.run(["cargo", "build", "-q", "-p", "watchtrain-relay"], cwd=REPO, check=True)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Relay:
    """One relay process; stop, kill and start again on the same port and database."""

    def __init__(self, folder: pathlib.Path, *args: str):
        self.port = free_port()
        self.db = folder / "relay.sqlite3"
        self.log = folder / "relay.log"
        self.args = list(args)
        self.proc: subprocess.Popen | None = None
        self.scheme = "http"
        self.ca_file: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _open(self, path: str, token: str | None = None, timeout: float = 5):
        request = urllib.request.Request(f"{self.scheme}://127.0.0.1:{self.port}{path}")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        context = ssl.create_default_context(cafile=self.ca_file) if self.scheme == "https" else None
        return urllib.request.urlopen(request, timeout=timeout, context=context)

    def start(self, scheme: str = "http", ca_file: str | None = None) -> "Relay":
        self.scheme, self.ca_file = scheme, ca_file
        cmd = [str(relay_binary()), "--listen", f"127.0.0.1:{self.port}", "--db", str(self.db), *self.args]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"relay exited: {self.log.read_text()[-2000:]}")
            try:
                with self._open("/healthz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("relay did not come up")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def get(self, path: str, token: str | None = None) -> str:
        with self._open(path, token) as r:
            return r.read().decode()

    def state(self, training_id: int, token: str | None = None) -> dict:
        return json.loads(self.get(f"/v1/trainings/{training_id}", token))

    def trainings(self) -> list:
        return json.loads(self.get("/v1/trainings"))

    def history(self, training_id: int) -> list:
        """The stored stats rows as (epoch, values...) tuples, one per stats frame the relay applied."""
        text = self.get(f"/v1/trainings/{training_id}/history.csv")
        rows = [line.split(",") for line in text.strip().splitlines()[1:]]
        return [(int(r[0]),) + tuple(float(v) for v in r[2:]) for r in rows]
