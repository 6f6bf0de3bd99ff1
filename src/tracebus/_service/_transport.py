"""The socket transport: addresses, length-prefixed frames, connecting.

On a Unix or TCP socket every message travels as one frame: a 4-byte big-endian length, then
that many bytes of msgpack (see ``_protocol``).
"""

from __future__ import annotations

import os
import socket
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import anyio
from anyio.abc import ByteStream, SocketAttribute

from .._exceptions import ProtocolError, ServiceUnavailableError
from .._token import is_loopback
from ._codes import ErrorCode

HEADER = struct.Struct(">I")
_CHUNK = 256 * 1024


@dataclass(frozen=True, slots=True)
class UnixAddress:
    path: Path

    def __str__(self) -> str:
        return f"unix:{self.path}"


@dataclass(frozen=True, slots=True)
class TcpAddress:
    host: str
    port: int

    @property
    def is_loopback(self) -> bool:
        return is_loopback(self.host)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"


Address = UnixAddress | TcpAddress


def parse_address(address: str | os.PathLike[str]) -> Address:
    """``tcp://HOST:PORT`` is TCP; ``unix:PATH`` or any other text is a Unix socket's path.

    Raises ValueError for a TCP address without a valid port.
    """
    if not isinstance(address, str):
        return UnixAddress(Path(address))
    if address.startswith("tcp://"):
        return parse_tcp(address.removeprefix("tcp://"))
    return UnixAddress(Path(address.removeprefix("unix:")))


def parse_tcp(text: str, default_host: str = "127.0.0.1") -> TcpAddress:
    """``HOST:PORT``, ``[V6]:PORT`` or ``:PORT``/``PORT`` (on ``default_host``).

    Raises ValueError when the port is missing or out of range.
    """
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip("[]") or default_host
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"not a TCP address (HOST:PORT): {text!r}") from None
    if not 0 <= number <= 65_535:
        raise ValueError(f"TCP port out of range: {number}")
    return TcpAddress(host, number)


def default_socket_path() -> Path:
    """``$TRACEBUS_SOCKET``, else ``$XDG_RUNTIME_DIR/tracebus.sock``, else
    ``{tmp}/tracebus-{uid}/tracebus.sock`` (a directory only its owner may enter)."""
    if explicit := os.environ.get("TRACEBUS_SOCKET"):
        return Path(explicit)
    if runtime := os.environ.get("XDG_RUNTIME_DIR"):
        return Path(runtime) / "tracebus.sock"
    return Path(tempfile.gettempdir()) / f"tracebus-{os.getuid()}" / "tracebus.sock"


class FrameStream:
    """Length-prefixed frames over a byte stream."""

    def __init__(self, stream: ByteStream, max_frame_bytes: int) -> None:
        self.stream = stream
        #: The largest frame ``receive`` takes (it may change between frames).
        self.max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()

    async def receive(self) -> bytes:
        """The next frame's body.

        Raises anyio.EndOfStream when the peer closed between frames; ProtocolError
        ``frame_too_large`` (the body is not read) or ``truncated_frame`` (closed mid-frame).
        """
        buffer = self._buffer
        while True:
            # never more than a frame's worth: what a peer sends is buffered up to one frame
            wanted = min(_CHUNK, HEADER.size + self.max_frame_bytes)
            if len(buffer) >= HEADER.size:
                (length,) = HEADER.unpack_from(buffer)
                if length > self.max_frame_bytes:
                    raise ProtocolError(
                        ErrorCode.FRAME_TOO_LARGE,
                        f"a frame of {length} bytes is over the limit of "
                        f"{self.max_frame_bytes} bytes",
                    )
                end = HEADER.size + length
                if len(buffer) >= end:
                    with memoryview(buffer) as view:  # one copy of the body, not two
                        body = bytes(view[HEADER.size : end])
                    del buffer[:end]
                    return body
                wanted = max(wanted, end - len(buffer))
            try:
                chunk = await self.stream.receive(wanted)
            except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
                if buffer:
                    raise ProtocolError(
                        ErrorCode.TRUNCATED_FRAME, "the connection closed in the middle of a frame"
                    ) from None
                raise anyio.EndOfStream from None
            buffer += chunk

    async def send(self, body: bytes) -> None:
        await self.stream.send(HEADER.pack(len(body)) + body)

    async def aclose(self) -> None:
        await self.stream.aclose()


async def open_stream(address: Address) -> ByteStream:
    """A connected stream to the collector at ``address``.

    Raises ServiceUnavailableError when nothing answers there, or when a Unix socket is not
    this user's or root's (another user could be listening there to collect the events).
    """
    try:
        if isinstance(address, UnixAddress):
            _check_owner(address, os.stat(address.path).st_uid)
            stream = await anyio.connect_unix(address.path)
            try:
                _check_owner(address, _peer_uid(stream))
            except BaseException:
                await stream.aclose()
                raise
            return stream
        return await anyio.connect_tcp(address.host, address.port)
    except OSError as exc:
        raise ServiceUnavailableError(f"cannot reach the collector at {address}: {exc}") from exc


def _check_owner(address: UnixAddress, uid: int | None) -> None:
    me = os.getuid()
    if uid is not None and uid not in (me, 0):
        raise ServiceUnavailableError(
            f"the socket {address.path} belongs to uid {uid}, neither this user (uid {me}) nor "
            "root: refusing to send it events (another user may have taken its place)"
        )


def _peer_uid(stream: ByteStream) -> int | None:
    """The uid of the process listening at the other end (Linux), else None."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    raw = stream.extra(SocketAttribute.raw_socket)
    _, uid, _ = _UCRED.unpack(raw.getsockopt(socket.SOL_SOCKET, option, _UCRED.size))
    return int(uid)


_UCRED = struct.Struct("3i")  # pid, uid, gid
