#!/usr/bin/env python3
"""The cross-built relay and CLI under qemu-user, on loopback only.

    scripts/qemu-smoke.py --emulator qemu-aarch64 --machine aarch64 \
        --relay dist/watchtrain-relay-aarch64-unknown-linux-musl \
        --cli dist/watchtrain-aarch64-unknown-linux-musl

Checks, each against the emulated binaries: both are static ELF files for the machine;
`--help` of both; `--demo --db FILE` serves /healthz, lists the demo training on
GET /v1/trainings, and a consumer on /v1/watch gets a snapshot and then live frames;
the emulated CLI sends a stats frame, the relay is killed (SIGKILL) and started again on
the same --db, and the stats frame is still there; SIGTERM stops it cleanly.

Standard library only, with a tiny WebSocket client (RFC 6455, client side).
"""

import argparse
import base64
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

# Action tags of the postcard encoding (protocol/src/frame.rs, enum order).
TAGS = ["Register", "Progress", "Stats", "Log", "Finished", "Heartbeat", "Stalled", "Ack", "Snapshot"]
ELF_MACHINES = {"aarch64": 183, "arm": 40, "x86_64": 62}
PROBE = 0.125  # exact in f32


class Failure(Exception):
    pass


PASSED = []


def check(cond, what):
    if not cond:
        raise Failure(what)
    PASSED.append(what)
    print(f"  ok  {what}", flush=True)


# ---------------------------------------------------------------- ELF


def elf_facts(path):
    """(e_machine, has PT_INTERP) of an ELF file."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF":
        raise Failure(f"{path} is not an ELF file")
    is64 = data[4] == 2
    endian = "<" if data[5] == 1 else ">"
    machine = struct.unpack_from(endian + "H", data, 18)[0]
    if is64:
        phoff, = struct.unpack_from(endian + "Q", data, 32)
        phentsize, phnum = struct.unpack_from(endian + "HH", data, 54)
    else:
        phoff, = struct.unpack_from(endian + "I", data, 28)
        phentsize, phnum = struct.unpack_from(endian + "HH", data, 42)
    interp = False
    for i in range(phnum):
        p_type, = struct.unpack_from(endian + "I", data, phoff + i * phentsize)
        interp |= p_type == 3  # PT_INTERP: needs a dynamic loader
    return machine, interp


# ---------------------------------------------------------------- postcard


def varint(data, pos):
    value = shift = 0
    while True:
        if pos >= len(data):
            raise Failure("truncated varint")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, pos


# The format version the relay writes, from the generated limits (one source for every language).
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "protocol", "vectors", "limits.json")) as f:
    FORMAT_VERSION = json.load(f)["protocol"]["format_version"]


def frame_head(data):
    """(training_id, seq, action name) of an encoded frame."""
    if not data or data[0] != FORMAT_VERSION:
        raise Failure(f"not a version-{FORMAT_VERSION} frame: {data[:8].hex()}")
    training_id, pos = varint(data, 1)
    seq, pos = varint(data, pos)
    tag, pos = varint(data, pos)
    if tag >= len(TAGS):
        raise Failure(f"unknown action tag {tag}")
    return training_id, seq, TAGS[tag]


# ---------------------------------------------------------------- WebSocket


class WebSocket:
    """Just enough of a WebSocket client: handshake, read messages, answer pings, close."""

    def __init__(self, port, path, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise Failure("connection closed during the WebSocket handshake")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            raise Failure(f"WebSocket handshake refused: {status.decode(errors='replace')}")

    def _exact(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Failure("WebSocket closed by the relay")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _send(self, opcode, payload=b""):
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def recv(self):
        """The next data message as (opcode, bytes); pings are answered on the way."""
        message, first = b"", None
        while True:
            b0, b1 = self._exact(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n, = struct.unpack("!H", self._exact(2))
            elif n == 127:
                n, = struct.unpack("!Q", self._exact(8))
            if b1 & 0x80:
                raise Failure("the relay sent a masked frame")
            payload = self._exact(n)
            if opcode == 9:
                self._send(10, payload)
            elif opcode == 10:
                pass
            elif opcode == 8:
                raise Failure(f"WebSocket closed by the relay: {payload[2:].decode(errors='replace')}")
            else:
                first = opcode if first is None else first
                message += payload
                if b0 & 0x80:
                    return first, message

    def close(self):
        try:
            self._send(8, struct.pack("!H", 1000))
        except OSError:
            pass
        self.sock.close()


# ---------------------------------------------------------------- the relay


class Relay:
    """One emulated relay process on 127.0.0.1 with an OS-chosen port."""

    def __init__(self, emulator, binary, db, demo, env=None):
        args = emulator + [binary, "--listen", "127.0.0.1:0"]
        if db is not None:
            args += ["--db", db]
        if demo:
            args += ["--demo", "--demo-speed", "20"]
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        self.port = None
        lines = []

        def read():
            for line in self.proc.stdout:
                lines.append(line)
                m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
                if m and self.port is None:
                    self.port = int(m.group(1))

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + 60
        while self.port is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop(signal.SIGKILL)
                raise Failure(f"the relay did not start: {''.join(lines)}{self.stderr()}")
            time.sleep(0.05)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path):
        try:
            with urllib.request.urlopen(self.url(path), timeout=20) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            raise Failure(f"GET {path}: {e.code} {e.read().decode(errors='replace').strip()}")

    def get_json(self, path):
        status, body = self.get(path)
        if status != 200:
            raise Failure(f"GET {path}: {status}")
        return json.loads(body)

    def stderr(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]

    def stop(self, sig):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def wait_for(what, fn, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Failure(f"timed out waiting for {what}")
        time.sleep(0.2)


def run(opts):
    emulator = opts.emulator.split()
    for path in (opts.relay, opts.cli):
        machine, interp = elf_facts(path)
        check(machine == ELF_MACHINES[opts.machine] and not interp,
              f"{os.path.basename(path)} is a static {opts.machine} ELF ({os.path.getsize(path)} bytes)")

    for path, flags in ((opts.relay, ["--listen", "--db", "--demo"]), (opts.cli, ["tail", "send", "watch"])):
        out = subprocess.run(emulator + [path, "--help"], capture_output=True, text=True, timeout=60)
        check(out.returncode == 0 and all(f in out.stdout for f in flags),
              f"{os.path.basename(path)} --help under {emulator[0]} ({', '.join(flags)})")

    with tempfile.TemporaryDirectory() as home:
        # Termux: $HOME and no XDG variables; the default --db goes under $HOME/.local/share.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "WATCHTRAIN_"))}
        env["HOME"] = home
        relay = Relay(emulator, opts.relay, None, demo=False, env=env)
        try:
            health = relay.get("/healthz")
            code = relay.stop(signal.SIGTERM)
        finally:
            relay.stop(signal.SIGKILL)
        default_db = os.path.join(home, ".local", "share", "watchtrain", "relay.sqlite3")
        check(health == (200, "ok\n") and code == 0 and os.path.getsize(default_db) > 0,
              "with only $HOME set (Termux), the default --db is $HOME/.local/share/watchtrain/relay.sqlite3")

    with tempfile.TemporaryDirectory() as tmp:
        # A data directory that does not exist yet, as on a fresh phone.
        db = os.path.join(tmp, "data", "relay.sqlite3")
        relay = Relay(emulator, opts.relay, db, demo=True)
        try:
            check(relay.get("/healthz") == (200, "ok\n"), f"GET /healthz on port {relay.port}")
            demo = wait_for("the demo training", lambda: [
                t for t in relay.get_json("/v1/trainings") if "demo" in t.get("name", "")])
            demo_id = demo[0]["id"]
            check(demo[0]["status"] in ("waiting", "running", "completed"),
                  f"GET /v1/trainings lists the demo training (id {demo_id}, {demo[0]['name']!r}, "
                  f"{demo[0]['status']})")

            ws = WebSocket(relay.port, "/v1/watch")
            try:
                _, data = ws.recv()
                tid, seq, action = frame_head(data)
                check(action == "Snapshot", f"/v1/watch starts with a snapshot of training {tid}")
                live = {}
                deadline = time.monotonic() + 60
                while not ({"Progress", "Stats"} <= live.keys()) and time.monotonic() < deadline:
                    _, data = ws.recv()
                    t, s, a = frame_head(data)
                    if t == tid:
                        live[a] = live.get(a, 0) + 1
                check({"Progress", "Stats"} <= live.keys(),
                      f"/v1/watch then gets live frames: {dict(sorted(live.items()))}")
            finally:
                ws.close()

            # Found again by its name: the relay does not list run keys.
            run_key = f"qemu-smoke-{os.getpid()}-{int(time.time())}"
            name = f"qemu smoke {os.getpid()}"
            url = f"ws://127.0.0.1:{relay.port}"
            sent = subprocess.run(
                emulator + [opts.cli, "--url", url, "--timeout", "20", "send", "--name", name,
                            "--run-key", run_key, "--epochs", "3",
                            "stats", "--epoch", "0", "--duration", "1.5", f"probe={PROBE}", "other=42"],
                capture_output=True, text=True, timeout=120)
            check(sent.returncode == 0, f"the emulated CLI sends a stats frame ({sent.stderr.strip()})")
            ours = [t for t in relay.get_json("/v1/trainings") if t.get("name") == name]
            check(len(ours) == 1 and ours[0]["latest"].get("probe") == PROBE,
                  f"the relay has it: {ours[0]['latest'] if ours else ours}")
            our_id = ours[0]["id"]
            code = relay.stop(signal.SIGKILL)
            check(code == -signal.SIGKILL, "relay killed with SIGKILL")
        except BaseException:
            relay.stop(signal.SIGKILL)
            sys.stderr.write(relay.stderr())
            raise

        relay = Relay(emulator, opts.relay, db, demo=False)
        try:
            one = relay.get_json(f"/v1/trainings/{our_id}")
            check(one["name"] == name and one["latest"].get("probe") == PROBE
                  and one["history"] and one["history"][0]["epoch"] == 0,
                  f"after the restart on the same --db: training {our_id} {one['latest']}")
            status, csv = relay.get(f"/v1/trainings/{our_id}/history.csv")
            rows = [line.split(",") for line in csv.strip().splitlines()]
            check(status == 200 and rows[0][:2] == ["epoch", "duration_ms"]
                  and any(r[0] == "0" and r[1] == "1500" and float(r[2 + rows[0][2:].index("probe")]) == PROBE
                          for r in rows[1:]),
                  f"history.csv keeps the stats row: {rows[1:]}")
            check(any(t["id"] == demo_id for t in relay.get_json("/v1/trainings")),
                  "the demo training is still listed")
            code = relay.stop(signal.SIGTERM)
            check(code == 0, "SIGTERM stops the emulated relay with exit status 0")
        except BaseException:
            relay.stop(signal.SIGKILL)
            sys.stderr.write(relay.stderr())
            raise


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--emulator", required=True, help="e.g. qemu-aarch64 (words are split)")
    ap.add_argument("--machine", required=True, choices=sorted(ELF_MACHINES))
    ap.add_argument("--relay", required=True)
    ap.add_argument("--cli", required=True)
    opts = ap.parse_args()
    start = time.monotonic()
    try:
        run(opts)
    except Failure as e:
        print(f"FAIL {e}", file=sys.stderr)
        print(f"qemu-smoke {opts.machine}: {len(PASSED)} passed, 1 failed")
        return 1
    print(f"checks took {time.monotonic() - start:.1f}s under {opts.emulator}")
    print(f"qemu-smoke {opts.machine}: {len(PASSED)} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
