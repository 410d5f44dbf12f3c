"""A real relay process on a loopback port, for the tests and the benchmark."""

from __future__ import annotations

import json
import os
import pathlib
import queue
import signal
import ssl
import subprocess
import threading
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


class Relay:
    """One relay process; stop, kill and start again on the same port and database.

    The first start listens on port 0 and reads the address the relay prints;
    a restart listens on that port again. The relay's stderr goes to ``relay.log``,
    quoted when it fails to start.
    """

    def __init__(self, folder: pathlib.Path, *args: str):
        self.port = 0
        self.db = folder / "relay.sqlite3"
        self.log = folder / "relay.log"
        self.args = list(args)
        self.proc: subprocess.Popen | None = None
        self.scheme = "http"
        self.ca_file: str | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def _open(self, path: str, token: str | None = None, timeout: float = 5):
        request = urllib.request.Request(f"{self.url}{path}")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        context = ssl.create_default_context(cafile=self.ca_file) if self.scheme == "https" else None
        return urllib.request.urlopen(request, timeout=timeout, context=context)

    def start(self, scheme: str = "http", ca_file: str | None = None) -> "Relay":
        self.scheme, self.ca_file = scheme, ca_file
        cmd = [str(relay_binary()), "--listen", f"127.0.0.1:{self.port}", "--db", str(self.db), *self.args]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log)
        lines: "queue.Queue[bytes]" = queue.Queue()

        def read(stdout) -> None:  # the first line, then the rest so the relay never blocks on its stdout
            for line in stdout:
                lines.put(line)
            lines.put(b"")

        threading.Thread(target=read, args=(self.proc.stdout,), daemon=True).start()
        try:
            first = lines.get(timeout=30).decode().strip()
        except queue.Empty:
            first = ""
        prefix = "watchtrain-relay listening on "
        if not first.startswith(prefix):
            self.kill()
            raise RuntimeError(f"the relay printed {first!r}, not its address; its stderr:\n{self.log.read_text()[-2000:]}")
        self.port = int(first[len(prefix):].rsplit(":", 1)[1])
        return self

    def down(self) -> "Relay":
        """Starts and kills the relay: its URL is then a port where nothing listens, until :meth:`start`."""
        self.start()
        self.kill()
        return self

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
