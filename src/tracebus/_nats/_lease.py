"""One collector per durable consumer, and where in the stream it got to.

Collectors bound to one durable consumer would share its messages, each run's split between
them: two writers of every run. So a collector first takes the durable's lease, a key in the
KV bucket ``<stream>_leases`` (whose entries expire ``LEASE_TTL`` seconds after their last
write): it creates the key (JetStream refuses if it exists), renews it every
``LEASE_TTL / 5`` seconds while it consumes, and deletes it when it stops. Another collector
waits until the key is gone, or expired (its holder died), or names a process of this host
that no longer exists. A holder that finds its key changed by someone else has lost the lease
and stops.

Its position, the stream sequence before which every message is written (or refused), goes
to the bucket ``<stream>_positions`` (no expiry), so a restarted collector starts right after
it even where JetStream's acknowledgement floor says less (nats-server 2.9 reports 0 for a
consumer created at a start sequence that has acknowledged nothing since).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable

import anyio
import msgspec
import nats.errors
import nats.js.errors
from anyio.abc import TaskStatus
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from .._exceptions import ServiceUnavailableError
from ._settings import NatsStream

log = logging.getLogger("tracebus.nats")

#: A lease not renewed for this long is free for another collector.
LEASE_TTL = 15.0
_WAIT_POLL = 0.5


class Holder(msgspec.Struct):
    host: str
    pid: int
    since: float

    def __str__(self) -> str:
        return f"process {self.pid} on {self.host}"

    def is_gone(self) -> bool:
        """Whether it was a process of this host that no longer runs."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False


async def _bucket(js: JetStreamContext, config: KeyValueConfig) -> KeyValue:
    try:
        return await js.key_value(config.bucket)
    except nats.js.errors.BucketNotFoundError:
        pass
    try:
        return await js.create_key_value(config)
    except nats.js.errors.BadRequestError:  # made by another collector meanwhile
        return await js.key_value(config.bucket)


class Lease:
    """The lease of one durable consumer; see the module's docstring."""

    def __init__(self, js: JetStreamContext, stream: NatsStream, durable: str) -> None:
        self._js = js
        self._stream = stream
        self._key = durable
        self._me = Holder(host=socket.gethostname(), pid=os.getpid(), since=time.time())
        self._kv: KeyValue | None = None
        self._revision: int | None = None
        self.ttl = LEASE_TTL
        #: Set while this collector holds the lease (after ``acquire``).
        self.held = anyio.Event()

    async def acquire(self) -> None:
        """Take the lease, waiting while another live collector holds it.

        Raises ServiceUnavailableError when JetStream refuses the bucket.
        """
        try:
            kv = self._kv = await _bucket(
                self._js,
                KeyValueConfig(
                    bucket=f"{self._stream.name}_leases",
                    ttl=self.ttl,
                    history=1,
                    storage=StorageType.FILE,
                    replicas=self._stream.replicas,
                ),
            )
        except (nats.errors.Error, TimeoutError) as exc:
            raise ServiceUnavailableError(f"cannot use the lease bucket: {exc}") from exc
        value = msgspec.json.encode(self._me)
        told: Holder | None = None
        while True:
            try:
                self._revision = await kv.create(self._key, value)
                self.held.set()
                return
            except nats.js.errors.KeyWrongLastSequenceError:
                pass
            except (nats.errors.Error, TimeoutError) as exc:
                log.debug("lease: %s", exc)
                await anyio.sleep(_WAIT_POLL)
                continue
            holder, revision = await self._holder(kv)
            if holder is not None and revision is not None and holder.is_gone():
                log.info("consumer %s: its holder, %s, is gone; taking over", self._key, holder)
                try:
                    await kv.delete(self._key, last=revision)
                except (nats.errors.Error, TimeoutError):
                    pass
                continue
            if holder is not None and holder != told:
                log.warning(
                    "consumer %s is held by %s (one collector per durable consumer): waiting "
                    "for it to stop, or for its lease to expire %gs after it died",
                    self._key, holder, self.ttl,
                )  # fmt: skip
                told = holder
            await anyio.sleep(_WAIT_POLL)

    async def _holder(self, kv: KeyValue) -> tuple[Holder | None, int | None]:
        try:
            entry = await kv.get(self._key)
        except (nats.errors.Error, TimeoutError):
            return None, None  # gone meanwhile (deleted, expired), or not answering
        try:
            return msgspec.json.decode(entry.value or b"", type=Holder), entry.revision
        except msgspec.DecodeError:
            return None, entry.revision

    async def keep(
        self,
        on_lost: Callable[[str], None],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Renew the lease until cancelled. When it is lost (another collector holds it, or
        it could not be renewed within its time to live, NATS being away), call ``on_lost``
        with why, take it again (waiting as ``acquire`` does) and go on; ``held`` is clear
        meanwhile."""
        task_status.started()
        while True:
            why = await self._renew()
            self.held = anyio.Event()
            log.error("%s; stopped consuming until it is held again", why)
            on_lost(why)
            await self.acquire()
            self.held.set()
            log.info("consumer %s: the lease is held again", self._key)

    async def _renew(self) -> str:
        """Renew every ``ttl / 5`` seconds; return why the lease was lost."""
        kv = self._kv
        assert kv is not None
        value = msgspec.json.encode(self._me)
        renewed = anyio.current_time()
        while True:
            await anyio.sleep(self.ttl / 5)
            try:
                self._revision = await kv.update(self._key, value, last=self._revision)
                renewed = anyio.current_time()
            except nats.js.errors.KeyWrongLastSequenceError:
                return f"lost the lease of consumer {self._key}: another collector took it"
            except (nats.errors.Error, TimeoutError) as exc:
                if anyio.current_time() - renewed > self.ttl:
                    return (
                        f"lost the lease of consumer {self._key}: not renewed for "
                        f"{self.ttl:g}s ({exc})"
                    )

    async def release(self) -> None:
        """Give the lease up, if still ours (never raises)."""
        if self._kv is None or self._revision is None:
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(5.0):
            try:
                await self._kv.delete(self._key, last=self._revision)
            except (nats.errors.Error, TimeoutError) as exc:
                log.debug("lease release: %s", exc)
        self._revision = None


class Positions:
    """Each durable consumer's position: every message up to it is written or refused."""

    def __init__(self, js: JetStreamContext, stream: NatsStream) -> None:
        self._js = js
        self._stream = stream
        self._kv: KeyValue | None = None

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            self._kv = await _bucket(
                self._js,
                KeyValueConfig(
                    bucket=f"{self._stream.name}_positions",
                    history=1,
                    storage=StorageType.FILE,
                    replicas=self._stream.replicas,
                ),
            )
        return self._kv

    async def load(self, durable: str) -> int:
        """The saved position, 0 if none. Raises ServiceUnavailableError."""
        try:
            kv = await self._bucket()
            entry = await kv.get(durable)
        except nats.js.errors.NotFoundError:  # never saved, or deleted
            return 0
        except (nats.errors.Error, TimeoutError) as exc:
            raise ServiceUnavailableError(f"cannot read the collector's position: {exc}") from exc
        try:
            return max(0, int((entry.value or b"0").decode()))
        except ValueError:
            return 0

    async def save(self, durable: str, position: int) -> bool:
        """Store the position; False (logged) when JetStream did not take it."""
        try:
            kv = await self._bucket()
            await kv.put(durable, str(position).encode())
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("cannot save the position of consumer %s: %s", durable, exc)
            return False
        return True
