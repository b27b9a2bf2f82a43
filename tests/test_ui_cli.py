"""`eventlog ui` run for real: it serves the UI over HTTP on loopback (answering only loopback
Host names), refuses a non-loopback host without `--allow-remote` and warns with it, is
read-only unless `--allow-fork`, serves a past view with `--at`, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from eventlog import open_store
from tests.test_cli import REPO, cli_env, eventlog
from tests.test_projections import seed


@pytest.fixture
def log_url(tmp_path: Path) -> str:
    url = str(tmp_path / "log")
    store = open_store(url)
    seed(store)
    store.close()
    return url


@contextmanager
def serving(*args: str) -> Iterator[tuple[str, subprocess.Popen[bytes], list[str]]]:
    """`eventlog ... ui --port 0 ...` in a subprocess; yields its URL (and what it said on
    stderr) once it listens."""
    proc = subprocess.Popen([sys.executable, "-m", "adapters.cli", *args, "--port", "0"], cwd=REPO,
                            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None
        lines = []
        for _ in range(5):
            line = proc.stderr.readline().decode()
            lines.append(line)
            found = re.search(r"eventlog ui: (http://\S+/)", line)
            if found:
                yield found.group(1), proc, lines
                return
        raise AssertionError(f"no URL printed: {lines!r}")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:  # pragma: no cover
                proc.kill()
                proc.wait()


def test_ui_serves_pages_on_loopback_and_stops_on_ctrl_c(log_url: str) -> None:
    with serving("--url", log_url, "ui") as (url, proc, _):
        assert url.startswith("http://127.0.0.1:")
        home = httpx.get(url, timeout=10)
        assert home.status_code == 200 and 'data-session="s1"' in home.text and "read-only" in home.text
        timeline = httpx.get(f"{url}session", params={"id": "s1"}, timeout=10)
        assert timeline.status_code == 200 and "hash chain intact" in timeline.text
        assert "fork-button" not in httpx.get(f"{url}state", params={"session": "s1", "at": "2"}, timeout=10).text
        assert httpx.get(f"{url}session", params={"id": "nope"}, timeout=10).status_code == 404
        # DNS rebinding: a page of another site resolving its name to 127.0.0.1 is refused
        assert httpx.get(url, headers={"Host": "evil.example:8765"}, timeout=10).status_code == 421
        refused = httpx.post(f"{url}fork", data={"session": "s1", "at": "2"}, timeout=10)
        assert refused.status_code == 403
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0


def test_allow_fork_shows_the_form_and_forks(log_url: str) -> None:
    with serving("--url", log_url, "ui", "--allow-fork") as (url, _, _):
        state = httpx.get(f"{url}state", params={"session": "s1", "at": "2"}, timeout=10)
        token = re.search(r'name="token" value="([^"]+)"', state.text).group(1)  # type: ignore[union-attr]
        done = httpx.post(f"{url}fork", data={"session": "s1", "at": "2", "token": token}, timeout=10,
                          follow_redirects=True)
        assert done.status_code == 200 and "session.forked" in done.text
    store = open_store(log_url)
    assert len(store.streams("session/")) == 3
    store.close()


def test_at_serves_a_view_of_the_past(log_url: str) -> None:
    with serving("--url", log_url, "ui", "--at", "3", "--allow-fork") as (url, _, _):
        home = httpx.get(url, timeout=10)
        assert "as of 3" in home.text and 'data-session="s2"' not in home.text and "read-only" in home.text
        timeline = httpx.get(f"{url}session", params={"id": "s1"}, timeout=10)
        assert timeline.text.count('class="event"') == 3


def test_a_non_loopback_host_needs_allow_remote_and_warns(log_url: str) -> None:
    refused = eventlog("--url", log_url, "ui", "--host", "0.0.0.0")
    assert refused.returncode == 2 and "not a loopback address" in refused.stderr
    assert "--allow-remote" in refused.stderr and "Traceback" not in refused.stderr
    with serving("--url", log_url, "ui", "--host", "0.0.0.0", "--allow-remote") as (url, _, said):
        assert url.startswith("http://0.0.0.0:")
        assert said[0].startswith("warning: serving on 0.0.0.0") and "read the whole log" in said[0]
        port = url.rsplit(":", 1)[1].strip("/")
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200  # any Host is answered


def test_bad_options_exit_2_with_a_hint(log_url: str) -> None:
    for args, message in ((["--port", "70000"], "bad port"), (["--poll", "0"], "bad --poll"),
                          (["--at", "2026-13-45"], "bad time")):
        done = eventlog("--url", log_url, "ui", *args)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert "ui" in eventlog("--help").stdout
