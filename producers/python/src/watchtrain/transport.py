"""A small blocking WebSocket client (RFC 6455), enough for binary frames to the relay.

Written here so that ``pip install watchtrain`` needs nothing else. Every
operation has a timeout; it is only ever used from the client's sender thread.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import select
import socket
import ssl
import struct
from typing import List, NamedTuple, Optional, Tuple
from urllib.parse import urlsplit

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 1, 2, 8, 9, 10


class TransportError(OSError):
    """The connection failed or the peer broke the protocol."""


class Refused(TransportError):
    """The relay answered the WebSocket request with an HTTP error: ``status`` and the relay's ``reason``."""

    def __init__(self, status: int, reason: str):
        super().__init__(f"the relay refused (HTTP {status}): {reason}")
        self.status = status
        self.reason = reason

    @property
    def permanent(self) -> bool:
        """A client error (a missing or wrong token, a wrong path): retrying cannot help."""
        return 400 <= self.status < 500 and self.status not in (408, 429)


class RelayUrl(NamedTuple):
    """A relay's address, checked once (see :func:`relay_url`)."""

    secure: bool
    host: str
    port: int
    prefix: str

    def authority(self) -> str:
        """``host:port``, with brackets around an IPv6 address."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def relay_url(url: str) -> RelayUrl:
    """Checks and normalises a relay URL; raises ``ValueError`` saying what is wrong.

    ``http://host:port[/prefix]``, ``https://``, ``ws://``, ``wss://``, or
    ``host:port`` (plain). The same rules as the CLI's ``RelayUrl::parse``.

    >>> relay_url("https://lab.example:8555/watchtrain/")
    RelayUrl(secure=True, host='lab.example', port=8555, prefix='/watchtrain')
    >>> relay_url("127.0.0.1:8555").authority()
    '127.0.0.1:8555'
    """
    text = url.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    scheme = scheme.lower()
    if scheme not in ("", "http", "https", "ws", "wss"):
        raise ValueError(f"bad relay URL {url!r}: the scheme must be http, https, ws or wss")
    try:
        parts = urlsplit("http://" + rest)
        port = parts.port
    except ValueError as e:
        raise ValueError(f"bad relay URL {url!r}: {e}") from None
    if not parts.hostname:
        raise ValueError(f"bad relay URL {url!r}: no host")
    if parts.query or parts.fragment:
        raise ValueError(f"bad relay URL {url!r}: a query does not belong in the relay URL (use token=)")
    if port == 0:
        raise ValueError(f"bad relay URL {url!r}: the port must be 1 to 65535")
    secure = scheme in ("https", "wss")
    if port is None:
        if not scheme:
            raise ValueError(f"bad relay URL {url!r}: expected http://host:port (or host:port)")
        port = 443 if secure else 80
    return RelayUrl(secure, parts.hostname, port, parts.path.rstrip("/"))


def refusal_reason(body: bytes) -> str:
    """The ``message`` of the relay's JSON refusal (``{"error": ..., "message": ...}``), else the text itself."""
    text = body.decode("utf-8", "replace").strip()
    try:
        message = json.loads(text).get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message) if message else text[:200]


class WebSocket:
    """One client connection. ``send`` and ``poll`` raise :class:`TransportError` (or ``OSError``) when it breaks."""

    def __init__(self, url: RelayUrl, path: str, token: Optional[str] = None, timeout: float = 5.0,
                 ca_file: Optional[str] = None):
        self.timeout = timeout
        sock = socket.create_connection((url.host, url.port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if url.secure:
                context = ssl.create_default_context(cafile=ca_file)
                sock = context.wrap_socket(sock, server_hostname=url.host)
            self.sock = sock
            self._buf = b""
            self._handshake(url.authority(), url.prefix + path, token)
        except BaseException:
            sock.close()
            raise

    def _handshake(self, authority: str, path: str, token: Optional[str]) -> None:
        key = base64.b64encode(os.urandom(16))
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {authority}",
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
        fields = {}
        for line in headers:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        code = status.split(" ", 2)[1] if status.count(" ") >= 1 else ""
        if code != "101":
            raise Refused(int(code) if code.isdigit() else 0, refusal_reason(self._refusal_body(fields)) or status.strip())
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest()).decode()
        if fields.get("sec-websocket-accept") != accept:
            raise TransportError("bad Sec-WebSocket-Accept in the relay's answer")

    def _refusal_body(self, fields: dict) -> bytes:
        """The body of an HTTP error answer (the relay's JSON reason), read for at most ``timeout``."""
        try:
            length = min(int(fields.get("content-length", "0")), 4096)
        except ValueError:
            length = 0
        try:
            while len(self._buf) < length:
                chunk = self.sock.recv(4096)
                if not chunk:
                    break
                self._buf += chunk
        except OSError:
            pass
        return self._buf[:length]

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
                    reason = payload[2:].decode("utf-8", "replace")
                    raise TransportError("the relay closed the connection" + (f": {reason}" if reason else ""))
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
