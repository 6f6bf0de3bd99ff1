"""The public homes of the service and the NATS transport, and the error codes' one table."""

from __future__ import annotations

import subprocess
import sys
from types import ModuleType
from typing import Any

import pytest

import tracebus
import tracebus.nats
import tracebus.service
from tracebus._nats._collector import NatsCollector
from tracebus._nats._settings import NatsSettings, Partition
from tracebus._service._codes import ErrorCode, defers, is_fatal, is_transient
from tracebus._service._limits import Limits
from tracebus._service._server import Collector


@pytest.mark.parametrize("module", [tracebus.service, tracebus.nats])
def test_all_lists_exactly_the_public_names(module: ModuleType) -> None:
    public = {n for n in dir(module) if not n.startswith("_") and n != "annotations"}
    public -= {n for n in public if isinstance(getattr(module, n), ModuleType)}
    assert sorted(module.__all__) == sorted(public)


def test_the_public_homes_hold_the_objects_of_the_private_paths() -> None:
    assert tracebus.service.Collector is Collector
    assert tracebus.service.Limits is Limits
    assert tracebus.service.ErrorCode is ErrorCode
    assert tracebus.nats.NatsCollector is NatsCollector
    assert tracebus.nats.Partition is Partition
    assert tracebus.nats.NatsSettings is NatsSettings is tracebus.NatsSettings
    assert repr(Collector) == "<class 'tracebus.service.Collector'>"
    assert repr(tracebus.nats.NatsCollector) == "<class 'tracebus.nats.NatsCollector'>"


def test_the_nats_settings_import_without_nats_py_or_the_service() -> None:
    code = "import sys, tracebus.nats; print(' '.join(sorted(sys.modules)))"
    loaded = set(subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split())  # fmt: skip
    assert "tracebus._nats._settings" in loaded
    assert {"nats", "tracebus._service", "tracebus._nats._collector"} & loaded == set()


def test_every_code_the_service_sends_is_one_member_with_its_meaning() -> None:
    assert [code for code in ErrorCode if code.defers] == [
        "producer_in_use", "write_failed", "open_failed", "resume_failed", "run_locked"
    ]  # fmt: skip
    assert {code for code in ErrorCode if code.transient} == {
        "too_many_connections", "shutting_down", *(code for code in ErrorCode if code.defers)
    }  # fmt: skip
    fatal = {code for code in ErrorCode if code.fatal}
    assert fatal == {
        "bad_hello", "bad_token", "unsupported_version", "hello_timeout", "frame_too_large",
        "too_many_events", "too_many_runs", *(c for c in ErrorCode if c.transient),
    }  # fmt: skip
    assert is_fatal("bad_token") and not is_fatal("run_ended")
    assert is_transient("shutting_down") and not is_transient("bad_token")
    assert defers("run_locked") and not defers("shutting_down")
    # a newer service's code is neither: an observer gives up rather than loop on it
    assert ErrorCode.of("a_new_code") is None
    assert not (is_fatal("a_new_code") or is_transient("a_new_code") or defers("a_new_code"))


def test_the_service_imports_no_nats_until_a_nats_address_is_used() -> None:
    code = (
        "import sys\n"
        "from tracebus._service import _client, _server, _sync_client, cli\n"
        "print(sorted(m for m in sys.modules if m.startswith('tracebus._nats')))\n"
        "obs = _client.RemoteObserver('nats://127.0.0.1:4222', 'wf')\n"
        "print(type(obs.address).__name__, type(obs.connector).__name__, 'nats' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    assert out == ["[]", "NatsSettings NatsConnector False"]


@pytest.mark.parametrize(
    "flavour",
    [tracebus.connect, tracebus.RemoteObserver, tracebus.connect_sync, tracebus.SyncRemoteObserver],
)
def test_a_remote_flavour_refuses_an_unknown_option_by_name(flavour: Any) -> None:
    name = flavour.__name__
    with pytest.raises(
        TypeError, match=rf"^{name}\(\) got an unexpected keyword argument 'bogus'$"
    ):
        flavour("/nowhere.sock", "wf", bogus=1)


def test_a_remote_observer_shows_the_address_it_was_given_parsed(tmp_path: Any) -> None:
    from tracebus._service._transport import TcpAddress, UnixAddress
    from tracebus.nats import NatsSettings

    assert tracebus.RemoteObserver(tmp_path / "s.sock", "wf").address == UnixAddress(
        tmp_path / "s.sock"
    )
    assert tracebus.RemoteObserver("tcp://127.0.0.1:7000", "wf").address == TcpAddress(
        "127.0.0.1", 7000
    )
    settings = NatsSettings(servers=("nats://127.0.0.1:4222",))
    assert tracebus.RemoteObserver(settings, "wf").address is settings
