"""``tracebus watch`` over HTTP: what it serves, to whom, and how its updates come."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tracebus.cli import main

from .. import runs
from .conftest import Watch, Writer
from .test_live import attempts


def get(
    watch: Watch, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """``GET path`` exactly as given (no client normalises it): status, headers, body."""
    connection = http.client.HTTPConnection("127.0.0.1", watch.port, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def events(watch: Watch, path: str, headers: dict[str, str] | None = None) -> Iterator[Any]:
    """The updates of an event stream, decoded, as they come."""
    connection = http.client.HTTPConnection("127.0.0.1", watch.port, timeout=20)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("content-type", "").startswith("text/event-stream")
        for raw in response:
            line = raw.decode().rstrip("\n")
            if line.startswith("data: "):
                yield json.loads(line[len("data: ") :])
    finally:
        connection.close()


@pytest.fixture
def watched(tmp_path: Path, watches: list[Watch]) -> tuple[Watch, Path, str]:
    """A watch of one output directory holding a finished run: the watch, the directory and
    the run's address in it."""
    out = runs.failure_run(tmp_path / "runs")
    watch = Watch(str(out), "--port", "0")
    watches.append(watch)
    trace = runs.only_trace(out)
    return watch, out, f"0/{trace.relative_to(out).as_posix()}"


def test_pages_of_a_finished_run(watched: tuple[Watch, Path, str]) -> None:
    watch, _, address = watched
    status, headers, body = get(watch, "/")
    assert status == 200 and b'data-page="runs"' in body
    assert "script-src 'self'" in headers["content-security-policy"]
    listed = next(events(watch, "/events/runs"))["runs"]
    assert [(run["workflow_id"], run["status"], run["address"]) for run in listed] == [
        ("step_04_checks", "complete", address)
    ]
    status, _, body = get(watch, f"/run/{address}")
    assert status == 200 and b'data-page="run"' in body
    update = next(events(watch, f"/events/run/{address}"))
    assert update["reset"] is True
    run = update["run"]
    assert (run["workflow_id"], run["status"], run["counts"]["nodes_failed"]) == (
        "step_04_checks", "complete", 2,
    )  # fmt: skip
    held = attempts([update])
    assert sorted(node for node, _ in held) == ["a", "b", "c", "d", "e"]
    assert {node for (node, _), status in held.items() if status == "failed"} == {"b", "d"}
    assert update["failures"] == [
        ["b", "ValueError: bad input in b"], ["d", "ValueError: bad input in d"]
    ]  # fmt: skip
    status, headers, body = get(watch, "/static/timeline.js")
    assert status == 200 and b"window.tracebusTimeline = (function" in body
    assert headers["content-type"].startswith("text/javascript")
    assert any("ValueError: bad input in b" in line for line in update["lines"])


@pytest.mark.parametrize(
    "path",
    [
        "/run/0/../../etc/passwd",
        "/run/0/..%2F..%2F..%2Fetc%2Fpasswd",
        "/run/0/traces%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/run/0//etc/passwd",
        "/run/0/%2Fetc%2Fpasswd",
        "/run/1/traces/x.jsonl",
        "/run/-1/traces/x.jsonl",
        "/run/0/logs/",
        "/events/run/0/../../etc/passwd",
        "/events/run/0/%2E%2E/%2E%2E/etc/passwd",
        "/static/../_app.py",
        "/static/_app.py",
        "/static/runs.html%00.js",
    ],
)
def test_nothing_outside_the_runs_is_served(watched: tuple[Watch, Path, str], path: str) -> None:
    status, _, body = get(watched[0], path)
    assert status in (403, 404), (path, status)
    assert b"root:" not in body and b"import" not in body


def test_no_file_but_a_trace_and_no_link_out(
    tmp_path: Path, watched: tuple[Watch, Path, str]
) -> None:
    watch, out, address = watched
    secret = tmp_path / "secret.jsonl"
    secret.write_text('{"event_type": "workflow_start", "workflow_id": "secret"}\n')
    (out / "traces" / "trace_step_09_20260101_000000.jsonl").symlink_to(secret)
    (out / "audit" / "step_09").mkdir(parents=True)
    (out / "audit" / "step_09" / "trace_09.jsonl").symlink_to(secret)
    for path in (
        "traces/trace_step_09_20260101_000000.jsonl",
        "audit/step_09/trace_09.jsonl",
        quote(str(secret), safe=""),
        "logs/" + next(p.name for p in (out / "logs").iterdir()),
        "audit/step_00/metadata_00.json",
    ):
        for prefix in ("/run/0/", "/events/run/0/"):
            status, _, body = get(watch, prefix + path)
            assert status == 404, (prefix + path, status)
            assert b"secret" not in body
    assert get(watch, f"/run/{address}")[0] == 200


def test_loopback_watch_answers_loopback_host_names_only(
    watched: tuple[Watch, Path, str],
) -> None:
    watch = watched[0]
    for host in ("127.0.0.1", f"127.0.0.1:{watch.port}", f"localhost:{watch.port}", "[::1]:80"):
        assert get(watch, "/", {"Host": host})[0] == 200, host
    # a page of another site reaching 127.0.0.1 through a name of its own (DNS rebinding)
    status, _, body = get(watch, "/events/runs", {"Host": f"attacker.example:{watch.port}"})
    assert status == 403 and b"loopback host only" in body


def test_any_other_host_needs_a_token(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["watch", str(tmp_path), "--host", "0.0.0.0", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "tracebus watch: error: listening on 0.0.0.0 (not loopback) needs a token: "
        "use --token-file\n"
    )
    empty = tmp_path / "empty-token"
    empty.write_text("  \n")
    args = ["watch", str(tmp_path), "--host", "0.0.0.0", "--token-file", str(empty)]
    assert main(args) == 2
    assert "the token file" in capsys.readouterr().err


def test_token_from_a_file_is_asked_of_every_request(tmp_path: Path, watches: list[Watch]) -> None:
    out = runs.success_run(tmp_path / "runs")
    token_file = tmp_path / "token"
    token_file.write_text("s3cret token;=\n")
    watch = Watch(str(out), "--host", "0.0.0.0", "--port", "0", "--token-file", str(token_file))
    watches.append(watch)
    assert watch.url.startswith("http://0.0.0.0:")
    for path in ("/", "/events/runs", "/static/watch.js", "/?token=wrong"):
        status, _, body = get(watch, path)
        assert status == 401 and b"token is missing or wrong" in body, path
    status, headers, _ = get(watch, "/?token=s3cret%20token%3B%3D&x=1")
    assert status == 303 and headers["location"] == "/?x=1"
    cookie = headers["set-cookie"].split(";")[0]
    assert "s3cret" not in cookie and "httponly" in headers["set-cookie"].lower()
    assert get(watch, "/", {"Cookie": cookie})[0] == 200
    assert next(events(watch, "/events/runs", {"Cookie": cookie}))["runs"][0]["status"] == (
        "complete"
    )
    assert get(watch, "/", {"Authorization": "Bearer s3cret token;="})[0] == 200
    assert get(watch, "/", {"Cookie": cookie[:-1] + "0"})[0] == 401


def test_hundreds_of_events_a_second_come_as_a_few_updates(
    tmp_path: Path, writers: list[Writer], watches: list[Watch]
) -> None:
    out = tmp_path / "runs"
    writer = Writer(out, "busy_flow", 4000)
    writers.append(writer)
    watch = Watch(str(out), "--port", "0")
    watches.append(watch)
    address = next(events(watch, "/events/runs"))["runs"][0]["address"]
    stream = events(watch, f"/events/run/{address}")
    first = next(stream)
    assert first["reset"] and first["run"]["events"] == 1
    for _ in range(4):
        writer.send("burst 1000")
    writer.send("end")
    seen = [first]
    for update in stream:
        seen.append(update)
        assert not update["reset"]
        if update["run"]["status"] == "complete":
            break
    updates = len(seen)
    held = attempts(seen)
    assert len(held) == 4000 and set(held.values()) == {"success"}
    assert update["run"]["counts"]["nodes_completed"] == 4000
    assert update["run"]["events"] == 8002
    # 8002 events, a few updates: each update carries hundreds of them
    assert updates * 100 < 8002, updates


def test_page_survives_a_restart_of_the_watch(
    tmp_path: Path, writers: list[Writer], watches: list[Watch]
) -> None:
    out = tmp_path / "runs"
    writer = Writer(out, "long_flow", 2)
    writers.append(writer)
    writer.send("start a")
    first = Watch(str(out), "--port", "0")
    watches.append(first)
    address = next(events(first, "/events/runs"))["runs"][0]["address"]
    assert first.stop() == 0
    writer.send("ok a")
    again = Watch(str(out), "--port", str(first.port))
    watches.append(again)
    update = next(events(again, f"/events/run/{address}"))
    assert update["reset"] and attempts([update]) == {("a", 1): "success"}


def test_a_killed_writer_leaves_its_run_incomplete(
    tmp_path: Path, writers: list[Writer], watches: list[Watch]
) -> None:
    out = tmp_path / "runs"
    writer = Writer(out, "step_03_killed", 2)
    writers.append(writer)
    writer.send("start a")
    watch = Watch(str(out), "--port", "0")
    watches.append(watch)
    runs_list = events(watch, "/events/runs")
    listed = next(runs_list)["runs"]
    assert [run["status"] for run in listed] == ["running"]
    stream = events(watch, f"/events/run/{listed[0]['address']}")
    assert next(stream)["run"]["status"] == "running"
    writer.process.kill()
    writer.process.wait()
    # nothing more is written: the lock the writer held, gone with it, says so
    assert next(stream)["run"]["status"] == "incomplete"
    assert [run["status"] for run in next(runs_list)["runs"]] == ["incomplete"]


def test_watch_help_and_bad_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "file"
    file.write_text("")
    assert main(["watch", str(file), "--port", "0"]) == 2
    assert capsys.readouterr().err == f"tracebus watch: error: {file} is not a directory\n"
    with pytest.raises(SystemExit) as exit_:
        main(["watch", "--help"])
    assert exit_.value.code == 0
    assert "--token-file" in capsys.readouterr().out
