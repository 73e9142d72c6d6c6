"""`loopml local up` stops cleanly on Ctrl-C and SIGTERM within five seconds, also as a shell's background job."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra import declaration as decl

STOP_WITHIN_S = 5.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# What a non-interactive shell does to `cmd &`: the job starts with SIGINT ignored (and exec keeps it ignored).
AS_BACKGROUND_JOB = ["sh", "-c", 'trap "" INT; exec "$@"', "sh"]


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_local_up_stops_cleanly(tmp_path, stop_signal):
    # Given `loopml local up &` serving
    environment = {**os.environ, "LOOPML_HOME": str(tmp_path)}
    command = [str(Path(sys.executable).parent / "loopml"), "local", "up", "--http"]
    command += ["--port", str(_free_port()), "--api-port", str(_free_port())]
    process = subprocess.Popen(
        AS_BACKGROUND_JOB + command,
        cwd=decl.ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "local.json").exists():
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "local up did not start"
            time.sleep(0.1)
        assert json.loads((tmp_path / "local.json").read_text())["pid"] == process.pid
        # When it gets the signal
        sent = time.monotonic()
        process.send_signal(stop_signal)
        output, _ = process.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
    # Then it stopped by itself, in time, and cleaned up after itself
    assert process.returncode == 0, output
    assert took < STOP_WITHIN_S, f"took {took:.1f} s to stop"
    assert "local cloud stopped" in output
    assert not (tmp_path / "local.json").exists()
