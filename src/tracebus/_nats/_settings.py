"""Where the NATS servers are, how to log in, and the stream the runs go to.

Secrets (a password, a token) come from a file or the environment, never from the command
line: a command line is visible to every user of the machine (``ps``).
"""

from __future__ import annotations

import importlib.util
import os
import re
import ssl
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

#: Environment variables read by ``NatsSettings.from_environment``.
ENV_USER = "TRACEBUS_NATS_USER"
ENV_PASSWORD = "TRACEBUS_NATS_PASSWORD"
ENV_PASSWORD_FILE = "TRACEBUS_NATS_PASSWORD_FILE"
ENV_TOKEN = "TRACEBUS_NATS_TOKEN"
ENV_TOKEN_FILE = "TRACEBUS_NATS_TOKEN_FILE"

DEFAULT_STREAM = "TRACEBUS"
DEFAULT_PREFIX = "tracebus"
DEFAULT_MAX_AGE = 7 * 24 * 3600.0
DEFAULT_MAX_BYTES = 1024**3
DEFAULT_DUPLICATE_WINDOW = 120.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_DURABLE = "tracebus-collector"

_PREFIX_RE = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
_STREAM_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True, slots=True)
class NatsStream:
    """The JetStream stream holding the runs' events, created with these limits when missing.

    Retention is by limits: a message stays ``max_age`` seconds or until the stream holds
    ``max_bytes``, whichever comes first, oldest out first, whether or not a collector read
    it. ``duplicate_window`` is how long the server remembers a ``Nats-Msg-Id``.
    """

    name: str = DEFAULT_STREAM
    subject_prefix: str = DEFAULT_PREFIX
    max_age: float = DEFAULT_MAX_AGE
    max_bytes: int = DEFAULT_MAX_BYTES
    duplicate_window: float = DEFAULT_DUPLICATE_WINDOW
    replicas: int = 1

    def __post_init__(self) -> None:
        if not _STREAM_RE.fullmatch(self.name):
            raise ValueError(f"invalid stream name {self.name!r}: use 1-64 letters, digits, _ or -")
        if not _PREFIX_RE.fullmatch(self.subject_prefix):
            raise ValueError(
                f"invalid subject prefix {self.subject_prefix!r}: "
                "use dot-separated tokens of letters, digits, _ or -"
            )
        if self.max_age <= 0 or self.max_bytes <= 0 or self.duplicate_window <= 0:
            raise ValueError("max_age, max_bytes and duplicate_window must be positive")
        if self.replicas < 1:
            raise ValueError(f"replicas must be at least 1, got {self.replicas}")

    @property
    def subjects(self) -> str:
        """The stream's subject filter: every run under the prefix."""
        return f"{self.subject_prefix}.>"

    def subject(self, workflow_id: str, run_id: str) -> str:
        """``<prefix>.<workflow_id>.<run_id>``, each id one token (see ``subject_token``)."""
        return f"{self.subject_prefix}.{subject_token(workflow_id)}.{subject_token(run_id)}"

    def run_of(self, subject: str) -> tuple[str, str] | None:
        """The ``(workflow_id, run_id)`` a subject names, or None if it names no run."""
        head = self.subject_prefix + "."
        if not subject.startswith(head):
            return None
        parts = subject[len(head) :].split(".")
        if len(parts) != 2 or not all(parts):
            return None
        try:
            return id_of_token(parts[0]), id_of_token(parts[1])
        except ValueError:
            return None


_TOKEN_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_ESCAPE = re.compile(r"=([0-9A-F]{2})|~|(.)", re.S)


def subject_token(value: str) -> str:
    """``value`` as one NATS subject token of letters, digits, ``_``, ``-``, ``~``, ``=``.

    A subject cannot hold spaces, and ``.`` separates tokens: ``.`` is written ``~`` and any
    other byte of the UTF-8 of a character outside ``[A-Za-z0-9_-]`` as ``=XX`` (hex), so an
    id made only of letters, digits, ``.``, ``_`` and ``-`` keeps the token it always had.
    """
    if _TOKEN_SAFE.issuperset(value):
        return value
    return "".join(
        char
        if char in _TOKEN_SAFE
        else "~"
        if char == "."
        else "".join(f"={byte:02X}" for byte in char.encode())
        for char in value
    )


def id_of_token(token: str) -> str:
    """The id ``subject_token`` made ``token`` from. Raises ValueError if it made none."""
    data = bytearray()
    for match in _ESCAPE.finditer(token):
        escaped, other = match.groups()
        if escaped is not None:
            data.append(int(escaped, 16))
        elif other is None:
            data += b"."
        elif other in _TOKEN_SAFE:
            data += other.encode()
        else:
            raise ValueError(f"{token!r} is not a subject token made from an id")
    value = data.decode()  # UnicodeDecodeError is a ValueError
    if subject_token(value) != token:
        raise ValueError(f"{token!r} is not a subject token made from an id")
    return value


@dataclass(frozen=True, slots=True)
class NatsSettings:
    """How to reach NATS: servers, credentials, TLS, and the stream to use.

    ``servers`` are ``nats://HOST:PORT`` (or ``tls://``) URLs. Give ``user`` with
    ``password``, or ``token``, or neither. ``tls`` is
    passed to nats-py as it is; a ``tls://`` URL without it uses the system's CA bundle.

    Given as a remote observer's address, the settings name their transport by ``scheme``.
    """

    scheme: ClassVar[str] = "nats"

    servers: tuple[str, ...] = ("nats://127.0.0.1:4222",)
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    tls: ssl.SSLContext | None = None
    tls_hostname: str | None = None
    name: str = "tracebus"
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    stream: NatsStream = NatsStream()

    def __post_init__(self) -> None:
        if not self.servers:
            raise ValueError("at least one NATS server URL is needed")
        for url in self.servers:
            if urlsplit(url).scheme not in ("nats", "tls"):
                raise ValueError(f"not a NATS URL (nats://HOST:PORT or tls://HOST:PORT): {url!r}")
        if self.password is not None and self.token is not None:
            raise ValueError("give a NATS password or a token, not both")
        if (self.user is None) != (self.password is None):
            raise ValueError("a NATS user needs a password, and a password a user")

    @classmethod
    def from_url(cls, url: str, **options: object) -> NatsSettings:
        """Settings for a comma-separated list of server URLs."""
        servers = tuple(part.strip() for part in url.split(",") if part.strip())
        return cls(servers=servers, **options)  # type: ignore[arg-type]

    def _with_token(self, token: str) -> NatsSettings:
        return replace(self, token=token, user=None, password=None)

    def with_credentials(
        self,
        *,
        user: str | None = None,
        password_file: Path | None = None,
        token_file: Path | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> NatsSettings:
        """These settings with credentials from files, else from the environment
        (``TRACEBUS_NATS_USER`` with ``TRACEBUS_NATS_PASSWORD[_FILE]``,
        ``TRACEBUS_NATS_TOKEN[_FILE]``).

        Raises OSError when a file cannot be read, ValueError for a half-given user/password.
        """
        env = os.environ if environ is None else environ
        user = user or env.get(ENV_USER) or None
        password_file = password_file or _path(env.get(ENV_PASSWORD_FILE))
        token_file = token_file or _path(env.get(ENV_TOKEN_FILE))
        password = _read_secret(password_file) if password_file else env.get(ENV_PASSWORD)
        token = _read_secret(token_file) if token_file else env.get(ENV_TOKEN)
        return replace(
            self,
            user=user,
            password=password or None,
            token=token or None,
        )


def nats_settings_of(address: object, token: str | None = None) -> NatsSettings | None:
    """The NATS settings ``address`` stands for: NatsSettings, or ``nats://``/``tls://`` URLs
    (credentials then from the environment); None for any other address. A ``token``
    given with it is the NATS token.

    Raises ValueError or OSError as ``with_credentials`` does, ImportError without nats-py.
    """
    if isinstance(address, NatsSettings):
        settings = address
    elif isinstance(address, str) and address.lstrip().startswith(("nats://", "tls://")):
        settings = NatsSettings.from_url(address).with_credentials()
    else:
        return None
    _require_nats_py()
    return settings if token is None else settings._with_token(token)


def _require_nats_py() -> None:
    if importlib.util.find_spec("nats") is None:
        raise ImportError("the NATS transport needs nats-py: pip install 'tracebus[nats]'")


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _read_secret(path: Path) -> str:
    return path.read_text(encoding="utf-8").strip()


def tls_context(
    ca_file: Path | None, cert_file: Path | None = None, key_file: Path | None = None
) -> ssl.SSLContext:
    """A client TLS context trusting ``ca_file`` (else the system's CAs), presenting
    ``cert_file``/``key_file`` when the server asks for a client certificate.

    Raises OSError or ssl.SSLError for a file that cannot be read or used.
    """
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if cert_file is not None:
        context.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    return context


def url_has_secret(url: str) -> bool:
    """Whether a server URL carries a password or token (``nats://user:pass@host``)."""
    return any(urlsplit(part.strip()).username for part in url.split(","))


@dataclass(frozen=True, slots=True)
class Partition:
    """Collector ``index`` of ``count`` (0-based); ``Partition(0, 1)`` takes every run."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"partition {self.index} of {self.count}: need 0 <= I < N")

    @classmethod
    def parse(cls, text: str) -> Partition:
        """``I/N``, e.g. ``0/2``. Raises ValueError."""
        index, sep, count = text.partition("/")
        try:
            return cls(int(index), int(count))
        except ValueError:
            raise ValueError(f"not a partition I/N (e.g. 0/2): {text!r}") from None

    def owns(self, workflow_id: str, run_id: str) -> bool:
        if self.count == 1:
            return True
        return zlib.crc32(f"{workflow_id}\0{run_id}".encode()) % self.count == self.index

    def durable(self, base: str) -> str:
        return base if self.count == 1 else f"{base}-{self.index}-of-{self.count}"


#: The one collector that takes every run.
ALL_RUNS = Partition()
