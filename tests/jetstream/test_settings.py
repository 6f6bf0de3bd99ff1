"""Subjects, credentials and partitions: no server needed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracebus import InvalidIdError
from tracebus._layout import validate_id
from tracebus._nats._settings import NatsSettings, NatsStream, Partition, url_has_secret


def _is_valid_id(value: str) -> bool:
    try:
        validate_id(value)
    except InvalidIdError:
        return False
    return True


def test_each_id_stays_one_subject_token() -> None:
    stream = NatsStream(subject_prefix="acme.tracebus")
    subject = stream.subject("wf.a", "run.1")
    assert subject == "acme.tracebus.wf~a.run~1"
    assert stream.run_of(subject) == ("wf.a", "run.1")
    assert stream.subject("wf.a.run", "1") != subject
    assert stream.run_of("acme.tracebus.only-one") is None
    assert stream.run_of("other.wf.run") is None


@pytest.mark.parametrize(
    ("value", "token"),
    [
        ("step_01_plain-id", "step_01_plain-id"),
        ("wf.a", "wf~a"),
        ("simple analysis workflow", "simple=20analysis=20workflow"),
        ("été", "=C3=A9t=C3=A9"),
        ("a*b>c", "a=2Ab=3Ec"),
        ("run: 1~2=3", "run=3A=201=7E2=3D3"),
    ],
)
def test_any_id_is_one_subject_token_of_safe_characters(value: str, token: str) -> None:
    stream = NatsStream(subject_prefix="acme.tracebus")
    subject = stream.subject(value, value)
    assert subject == f"acme.tracebus.{token}.{token}"
    assert stream.run_of(subject) == (value, value)


@given(st.text(min_size=1, max_size=60).filter(_is_valid_id))
def test_every_valid_id_goes_to_a_token_and_back(value: str) -> None:
    stream = NatsStream()
    subject = stream.subject(value, "run")
    assert re.fullmatch(r"tracebus\.[A-Za-z0-9_~=-]+\.run", subject)
    assert stream.run_of(subject) == (value, "run")


@pytest.mark.parametrize("token", ["a b", "a=4", "a=41", "a=ZZ", "=FF", "é", "a*"])
def test_subjects_no_id_makes_name_no_run(token: str) -> None:
    assert NatsStream().run_of(f"tracebus.{token}.run") is None


def test_bad_stream_names_and_prefixes_are_refused() -> None:
    with pytest.raises(ValueError, match="invalid stream name"):
        NatsStream(name="has.dot")
    with pytest.raises(ValueError, match="invalid subject prefix"):
        NatsStream(subject_prefix="a.>")


def test_credentials_come_from_files_before_the_environment(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-file\n")
    env = {"TRACEBUS_NATS_USER": "svc", "TRACEBUS_NATS_PASSWORD": "from-env"}
    settings = NatsSettings().with_credentials(password_file=secret, environ=env)
    assert (settings.user, settings.password) == ("svc", "from-file")
    assert NatsSettings().with_credentials(environ=env).password == "from-env"
    assert "from-file" not in repr(settings)


def test_half_given_credentials_are_refused() -> None:
    with pytest.raises(ValueError, match="needs a password"):
        NatsSettings().with_credentials(environ={"TRACEBUS_NATS_USER": "svc"})
    with pytest.raises(ValueError, match="not both"):
        NatsSettings().with_credentials(
            environ={
                "TRACEBUS_NATS_USER": "svc",
                "TRACEBUS_NATS_PASSWORD": "p",
                "TRACEBUS_NATS_TOKEN": "t",
            }
        )


def test_urls_with_secrets_are_recognised() -> None:
    assert url_has_secret("nats://a:4222,nats://u:p@b:4222")
    assert not url_has_secret("nats://a:4222,tls://b:4222")
    with pytest.raises(ValueError, match="not a NATS URL"):
        NatsSettings.from_url("http://a:4222")


def test_partitions_split_runs_between_collectors() -> None:
    parts = [Partition.parse(f"{index}/3") for index in range(3)]
    runs = [("wf", f"run-{n}") for n in range(300)]
    owners = [[p.owns(*run) for p in parts].count(True) for run in runs]
    assert owners == [1] * 300
    assert all(any(p.owns(*run) for run in runs) for p in parts)
    assert parts[1].durable("tracebus-collector") == "tracebus-collector-1-of-3"
    with pytest.raises(ValueError, match="I/N"):
        Partition.parse("3/3")
