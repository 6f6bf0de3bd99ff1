"""The socket connector: a remote observer's link to the collector on a Unix or TCP socket."""

from __future__ import annotations

import anyio

from .._exceptions import ProtocolError, ServiceError, ServiceUnavailableError
from ._codes import ErrorCode
from ._limits import MAX_FRAME_BYTES
from ._link import SealedBatch
from ._protocol import ErrorReply, Hello, ServerMessage, Welcome, decode_server_message, encode
from ._transport import HEADER, Address, FrameStream, open_stream


class SocketLink:
    """A connection to the collector on a Unix or TCP socket, past its hello (a ``Link``)."""

    def __init__(self, frames: FrameStream, welcome: Welcome) -> None:
        self._frames = frames
        self.welcome = welcome

    @classmethod
    async def open(cls, address: Address, hello: Hello) -> SocketLink:
        """Connect and say hello.

        Raises ServiceUnavailableError when nothing answers, ServiceError when the service
        refuses (bad token, too many connections...).
        """
        stream = await open_stream(address)
        frames = FrameStream(stream, MAX_FRAME_BYTES)
        try:
            reply = await _hello(frames, hello, address)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await stream.aclose()
            raise
        return cls(frames, reply)

    @property
    def max_batch_bytes(self) -> int:
        return self.welcome.max_frame_bytes - HEADER.size

    @property
    def max_batch_events(self) -> int:
        return self.welcome.max_events_per_frame

    async def send(self, batch: SealedBatch) -> None:
        await self._frames.send(batch.body)

    async def send_message(self, body: bytes) -> None:
        """Send an encoded message other than a batch (a status request)."""
        await self._frames.send(body)

    async def receive(self) -> ServerMessage:
        return decode_server_message(await self._frames.receive())

    async def aclose(self) -> None:
        await self._frames.aclose()


async def _hello(frames: FrameStream, hello: Hello, address: Address) -> Welcome:
    try:
        try:
            await frames.send(encode(hello))
        except (anyio.BrokenResourceError, OSError):
            pass  # refused at once (too many connections): its error frame is waiting
        reply = decode_server_message(await frames.receive())
    except (OSError, anyio.EndOfStream, anyio.BrokenResourceError) as exc:
        raise ServiceUnavailableError(
            f"the collector at {address} did not answer the hello: {exc or type(exc).__name__}"
        ) from exc
    if isinstance(reply, ErrorReply):
        raise ServiceError(reply.code, reply.message)
    if not isinstance(reply, Welcome):
        raise ProtocolError(ErrorCode.BAD_FRAME, f"expected a welcome, got {type(reply).__name__}")
    return reply


class SocketConnector:
    """The collector listening at a Unix or TCP ``address`` (a ``Connector``)."""

    def __init__(self, address: Address) -> None:
        self.address = address

    @property
    def target(self) -> Address:
        return self.address

    def __str__(self) -> str:
        return str(self.address)

    async def open_link(
        self, hello: Hello, workflow_id: str, run_id: str, connect_timeout: float
    ) -> SocketLink:
        """Connect and say hello within ``connect_timeout`` seconds.

        Raises ServiceUnavailableError when nothing answers in time, ServiceError when the
        service refuses.
        """
        try:
            with anyio.fail_after(connect_timeout):
                return await SocketLink.open(self.address, hello)
        except TimeoutError:
            raise ServiceUnavailableError(
                f"the collector at {self.address} did not answer within {connect_timeout:g}s"
            ) from None
