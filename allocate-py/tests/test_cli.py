"""The ``allocate`` console script the package installs: allocate-cli's command line, run by
Python, against a real server started from Python."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Dict

import allocate
from helpers import eventually, machine


def script() -> str:
    """The console script, installed beside this interpreter."""
    path = Path(sys.executable).parent / "allocate"
    assert path.exists(), "installing the package installs the `allocate` command"
    return str(path)


def environment(server: allocate.Server, home: Path) -> Dict[str, str]:
    """This server, no token, and a config directory of the test's own."""
    env = dict(os.environ, ALLOCATE_URL=server.url, XDG_CONFIG_HOME=str(home), USER="py-cli")
    env.pop("ALLOCATE_TOKEN", None)
    env.pop("ALLOCATE_TOKEN_FILE", None)
    return env


def run(server: allocate.Server, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Runs `allocate ARGS` to its end."""
    return subprocess.run(
        [script(), *args],
        env=environment(server, home),
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_version_is_the_package_version() -> None:
    out = subprocess.run([script(), "--version"], capture_output=True, text=True, timeout=30)
    assert (out.returncode, out.stdout.strip()) == (0, f"allocate {allocate.__version__}")


def test_get_ls_release(server: allocate.Server, tag: str, tmp_path: Path) -> None:
    with server.add_agent([machine(tag, 41)]):
        got = run(server, tmp_path, "get", "--tags", tag, "-o", "json")
        assert got.returncode == 0, got.stderr
        lease = json.loads(got.stdout)
        assert (lease["status"], lease["connection"]["host"]) == ("ready", "10.0.0.41")
        listed = json.loads(run(server, tmp_path, "ls", "-o", "json").stdout)
        assert [a["allocation_id"] for a in listed] == [lease["allocation_id"]]
        assert listed[0]["username"] == "py-cli"
        assert run(server, tmp_path, "release", lease["allocation_id"]).returncode == 0
        again = run(server, tmp_path, "release", lease["allocation_id"])
        assert again.returncode == 3, "not found the second time"


def test_a_mistyped_flag_is_a_usage_error(server: allocate.Server, tmp_path: Path) -> None:
    out = run(server, tmp_path, "get", "--gpus", "many")
    assert out.returncode == 2
    assert "--gpus" in out.stderr


def test_ctrl_c_while_waiting_cancels_without_a_traceback(
    server: allocate.Server, client: allocate.Client, tag: str, tmp_path: Path
) -> None:
    with server.add_agent([machine(tag, 42)]):
        with client.allocate(tags=[tag], timeout=5):
            waiting = subprocess.Popen(
                [script(), "get", "--tags", tag, "--wait", "20s"],
                env=environment(server, tmp_path),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                eventually(lambda: any(a.state == "queued" for a in server.client().allocations()))
                waiting.send_signal(signal.SIGINT)
                _, err = waiting.communicate(timeout=20)
            finally:
                waiting.kill()
            assert waiting.returncode == 128 + signal.SIGINT, err
            assert "the request was cancelled" in err
            assert "Traceback" not in err and "KeyboardInterrupt" not in err
            assert not any(a.state == "queued" for a in server.client().allocations())


def test_a_server_that_is_down_is_the_connection_code(tmp_path: Path) -> None:
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path))
    out = subprocess.run(
        [script(), "--url", "http://127.0.0.1:9", "ls"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 6, out.stderr
