"""The local socket cannot be hijacked: the service refuses a socket directory another user
could swap the socket in, and the client refuses a socket another user serves.

Playing the other user takes root (to make files of another uid and run a process as it);
CI runs as root. Elsewhere these tests are skipped, saying why."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import tracebus

from ..cli import run_tracebus

OTHER = 65534  # nobody


def _require_root() -> None:
    if os.geteuid() == 0:
        return
    if os.environ.get("CI"):
        pytest.fail("these tests play another user: CI runs them as root")
    pytest.skip("playing another user needs root")


def _serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("TRACEBUS_SOCKET", "XDG_RUNTIME_DIR")
    }
    env["TMPDIR"] = str(tmp_path)  # the default socket: {TMPDIR}/tracebus-{uid}/tracebus.sock
    return run_tracebus("serve", "--out", tmp_path / "out", *args, env=env)


def _default_dir(tmp_path: Path) -> Path:
    return tmp_path / f"tracebus-{os.getuid()}"


def test_a_sticky_socket_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    _require_root()
    tmp_path.chmod(0o755)
    planted = _default_dir(tmp_path)
    planted.mkdir()
    os.chown(planted, OTHER, OTHER)
    planted.chmod(0o1777)
    served = _serve(tmp_path)
    assert served.returncode == 2, served.stdout
    assert served.stderr.strip() == (
        f"tracebus serve: error: the socket's directory {planted} belongs to uid {OTHER}, not "
        f"to this user (uid {os.getuid()}): another user could take the socket over; choose "
        "another --socket, or fix the directory"
    )
    assert not list(planted.iterdir())


def test_a_symlinked_socket_directory_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    _default_dir(tmp_path).symlink_to(elsewhere)
    served = _serve(tmp_path)
    assert served.returncode == 2
    assert "is a symbolic link: another user could take the socket over" in served.stderr
    assert not list(elsewhere.iterdir())  # the link was not followed


def test_a_socket_directory_others_can_write_to_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    served = _serve(tmp_path, "--socket", str(shared / "c.sock"))
    assert served.returncode == 2
    assert f"{shared} is writable by others (mode 0777)" in served.stderr


_IMPOSTOR = """
import os, socket, sys
os.setgid({uid}); os.setuid({uid})
listener = socket.socket(socket.AF_UNIX)
listener.bind(sys.argv[1]); listener.listen()
print("listening", flush=True)
peer, _ = listener.accept()
peer.settimeout(5)
got = b""
try:
    while chunk := peer.recv(65536):
        got += chunk
except OSError:
    pass
print(len(got), flush=True)
"""


@pytest.fixture
def public() -> Iterator[Path]:
    """A directory like /tmp (mode 1777: anyone may make a socket there), that the other
    user can reach."""
    path = Path(tempfile.mkdtemp(prefix="tbpub", dir="/tmp"))
    path.chmod(0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_the_client_refuses_a_socket_another_user_serves(public: Path) -> None:
    _require_root()
    path = public / "tracebus.sock"
    impostor = subprocess.Popen(
        [sys.executable, "-c", _IMPOSTOR.format(uid=OTHER), str(path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert impostor.stdout is not None
        assert impostor.stdout.readline().strip() == "listening"
        with pytest.raises(tracebus.ServiceUnavailableError) as refused:
            tracebus.connect_sync(path, "step_01_secret", connect_timeout=5)
        assert f"the socket {path} belongs to uid {OTHER}, neither this user" in str(refused.value)
        with socket.socket(socket.AF_UNIX) as closer:  # let the impostor stop waiting
            closer.connect(str(path))
        out, _ = impostor.communicate(timeout=60)
    finally:
        impostor.kill()
    assert out.strip() == "0"  # it never got a byte: no hello, no token, no event
