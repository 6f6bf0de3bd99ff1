"""``serve --nats`` reaches the JetStream collector whichever of the two registers first."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import pytest

from tracebus._nats import cli as nats_cli
from tracebus._service import cli as service_cli

Register = Callable[["service_cli.Commands"], None]
ORDERS = [
    pytest.param((service_cli.register, nats_cli.register), id="service-first"),
    pytest.param((nats_cli.register, service_cli.register), id="nats-first"),
]


def _parse(order: tuple[Register, Register], argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tracebus")
    commands = parser.add_subparsers(dest="command", required=True)
    for register in order:
        register(commands)
    return parser.parse_args(argv)


@pytest.mark.parametrize("order", ORDERS)
def test_serve_nats_is_read_by_the_jetstream_collector(
    order: tuple[Register, Register], tmp_path: Path
) -> None:
    args = _parse(order, ["serve", "--out", str(tmp_path), "--nats", "nats://me:secret@h:4222"])
    assert args.partition.count == 1 and args.nats_durable == "tracebus-collector"
    with pytest.raises(ValueError, match="the NATS URL holds credentials"):
        args.handler(args)
    args = _parse(order, ["serve", "--out", str(tmp_path), "--nats", "nats://h", "--tcp", ":1"])
    with pytest.raises(ValueError, match="--nats reads from NATS: it takes no --socket or --tcp"):
        args.handler(args)


@pytest.mark.parametrize("order", ORDERS)
def test_serve_without_nats_listens_on_sockets(
    order: tuple[Register, Register], tmp_path: Path
) -> None:
    # a public TCP address without a token is refused by the socket collector alone
    args = _parse(order, ["serve", "--out", str(tmp_path), "--tcp", "192.0.2.1:9"])
    with pytest.raises(ValueError, match="not loopback\\) needs a token"):
        args.handler(args)


def test_status_takes_no_nats_options(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        _parse((nats_cli.register, service_cli.register), ["status", "--nats", "nats://h"])
