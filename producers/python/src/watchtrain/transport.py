"""A small blocking WebSocket client (RFC 6455), enough for binary frames to the relay.

Written here so that ``pip install watchtrain`` needs nothing else. Every
operation has a timeout; it is only ever used from the client's sender thread.
"""

from __future__ import annotations

import base64
import hashlib
import os
import select
import socket
import ssl
import struct
from typing import List, Optional, Tuple
from urllib.parse import urlsplit

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 1, 2, 8, 9, 10


class TransportError(OSError):
    """The connection failed or the peer broke the protocol."""


def websocket_url(base: str, path: str) -> Tuple[str, str, int, str]:
    """``(scheme, host, port, path)`` for ``path`` on a relay at ``base`` (``http://host:8555``, ``ws://...``, ``https://...``)."""
    if "://" not in base:
        base = "http://" + base
    parts = urlsplit(base)
    secure = parts.scheme in ("https", "wss")
    if parts.scheme not in ("http", "https", "ws", "wss"):
        raise ValueError(f"unsupported URL scheme in {base!r}")
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if secure else 80)
    prefix = parts.path.rstrip("/")
    return ("wss" if secure else "ws", host, port, prefix + path)


class WebSocket:
    """One client connection. ``send`` and ``poll`` raise :class:`TransportError` (or ``OSError``) when it breaks."""

    def __init__(self, url: str, path: str, token: Optional[str] = None, timeout: float = 5.0,
                 ca_file: Optional[str] = None):
        scheme, host, port, full_path = websocket_url(url, path)
        self.timeout = timeout
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "wss":
                context = ssl.create_default_context(cafile=ca_file)
                sock = context.wrap_socket(sock, server_hostname=host)
            self.sock = sock
            self._buf = b""
            self._handshake(host, port, full_path, token)
        except BaseException:
            sock.close()
            raise

    def _handshake(self, host: str, port: int, path: str, token: Optional[str]) -> None:
        key = base64.b64encode(os.urandom(16))
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key.decode()}",
            "Sec-WebSocket-Version: 13",
            "User-Agent: watchtrain-python",
        ]
        if token:
            lines.append(f"Authorization: Bearer {token}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        while b"\r\n\r\n" not in self._buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise TransportError("connection closed during the WebSocket handshake")
            self._buf += chunk
            if len(self._buf) > 65536:
                raise TransportError("WebSocket handshake answer too long")
        head, self._buf = self._buf.split(b"\r\n\r\n", 1)
        status, *headers = head.decode("latin-1").split("\r\n")
        if " 101 " not in status + " ":
            raise TransportError(f"relay refused the WebSocket: {status.strip()}")
        fields = {}
        for line in headers:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest()).decode()
        if fields.get("sec-websocket-accept") != accept:
            raise TransportError("bad Sec-WebSocket-Accept in the relay's answer")

    def _send_frame(self, opcode: int, payload: bytes, timeout: Optional[float] = None) -> None:
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        mask = os.urandom(4)
        if n:
            repeated = (mask * (n // 4 + 1))[:n]
            masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")
        else:
            masked = b""
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        self.sock.sendall(head + mask + masked)

    def send(self, payload: bytes) -> None:
        """Sends one binary message; raises after ``timeout`` seconds if the peer does not read."""
        self._send_frame(OP_BINARY, payload)

    def _parse(self) -> Optional[Tuple[int, bytes]]:
        buf = self._buf
        if len(buf) < 2:
            return None
        b0, b1 = buf[0], buf[1]
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            if len(buf) < 4:
                return None
            n = struct.unpack_from("!H", buf, 2)[0]
            pos = 4
        elif n == 127:
            if len(buf) < 10:
                return None
            n = struct.unpack_from("!Q", buf, 2)[0]
            pos = 10
        mask = b""
        if b1 & 0x80:
            mask = buf[pos : pos + 4]
            pos += 4
        if n > 1 << 20:
            raise TransportError("WebSocket message too long")
        if len(buf) < pos + n:
            return None
        payload = buf[pos : pos + n]
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self._buf = buf[pos + n :]
        if not b0 & 0x80:
            raise TransportError("fragmented WebSocket messages are not supported")
        return b0 & 0x0F, payload

    def poll(self, wait: float = 0.0) -> List[bytes]:
        """Binary and text messages that arrived, waiting at most ``wait`` seconds for the first.

        Answers pings; raises :class:`TransportError` when the relay closed the connection.
        """
        out: List[bytes] = []
        while True:
            item = self._parse()
            while item is not None:
                opcode, payload = item
                if opcode in (OP_BINARY, OP_TEXT):
                    out.append(payload)
                elif opcode == OP_PING:
                    self._send_frame(OP_PONG, payload)
                elif opcode == OP_CLOSE:
                    raise TransportError("the relay closed the connection")
                item = self._parse()
            pending = self.sock.pending() if isinstance(self.sock, ssl.SSLSocket) else 0
            if not pending:
                readable, _, _ = select.select([self.sock], [], [], 0 if out else wait)
                if not readable:
                    return out
            self.sock.settimeout(self.timeout)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise TransportError("the relay closed the connection")
            self._buf += chunk
            wait = 0.0

    def close(self) -> None:
        """Sends a close frame if it can and closes the socket; never raises."""
        try:
            self._send_frame(OP_CLOSE, struct.pack("!H", 1000), timeout=0.2)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
