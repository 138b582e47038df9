"""The README's quickstart, run verbatim: the commands of the block under the ``quickstart``
marker, against an engine started as ``make run`` would start it (``python server.py`` with the
default configuration) in a fresh directory, so its SQLite shards (``var/``) are new. The test
sets only COFFER_LISTEN (a free port) for the engine and COFFER_TARGET for the commands, which
use the CLI's default target."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.engines import REPOSITORY, EngineProcess

MARKER = "<!-- quickstart:"
COMMAND_TIMEOUT_SECONDS = 60


def quickstart_commands(readme: str) -> list[str]:
    """The lines of the first ```sh block after the marker."""
    after = readme.split(MARKER, 1)[1]
    block = re.search(r"```sh\n(.*?)```", after, re.S)
    assert block is not None, "the quickstart marker is followed by no ```sh block"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


def _cash_left(output: str) -> list[str]:
    return re.findall(r"cash balance left\s*│\s*([0-9,.]+)", output)


def test_readme_quickstart_runs_verbatim(tmp_path: Path) -> None:
    readme = (REPOSITORY / "README.md").read_text()
    commands = quickstart_commands(readme)
    assert any(shlex.split(line)[1:2] == ["top-up"] for line in commands)
    script = REPOSITORY / ".venv" / "bin" / "coffer"
    assert script.exists(), "the coffer console script is missing: run make .venv/.installed"
    engine = EngineProcess({}, cwd=tmp_path, log_path=tmp_path / "engine.log")
    try:
        environment = {**os.environ, "COFFER_TARGET": engine.target, "COLUMNS": "120"}
        outputs = []
        for line in commands:
            done = subprocess.run(
                ["bash", "-c", line],
                cwd=REPOSITORY,
                env=environment,
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT_SECONDS,
            )
            assert done.returncode == 0, f"{line!r} failed ({done.returncode}): {done.stderr}"
            outputs.append((line, done.stdout, done.stderr))
        # The Python snippet (after the commands), pointed at this engine's port.
        snippet = re.search(r"```python\n(.*?)```", readme.split(MARKER, 1)[1], re.S)
        assert snippet is not None and "127.0.0.1:50051" in snippet.group(1)
        done = subprocess.run(
            [sys.executable, "-c", snippet.group(1).replace("127.0.0.1:50051", engine.target)],
            cwd=REPOSITORY,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_SECONDS,
        )
        assert done.returncode == 0, done.stderr
        charge_id, cash_fen, left_fen = done.stdout.split()
        assert charge_id.startswith("ch_") and (cash_fen, left_fen) == ("3000", "15000")
    finally:
        engine.terminate()
    by_command = {shlex.split(line)[1]: (out, err) for line, out, err in outputs}
    assert "SERVING" in by_command["health"][0]
    assert _cash_left(by_command["top-up"][0]) == ["100.00"]
    assert _cash_left(by_command["charge"][0]) == ["70.00"]
    refund_out = by_command["refund"][0]
    assert _cash_left(refund_out) == ["80.00"]
    assert re.search(r"refunded in total\s*│\s*10\.00", refund_out)
    assert re.search(r"CASH\s*│\s*80\.00", by_command["wallet"][0])
    history = by_command["history"][0]
    for kind, change in (("REFUND", "cash +10.00"), ("CHARGE", "cash -30.00"), ("TOP_UP", "cash +100.00")):
        assert re.search(rf"{kind}.*{re.escape(change)}", history), history
    # Every mutating command printed the key it used, so a retry can reuse it.
    for name in ("top-up", "charge", "refund"):
        assert "idempotency key: cli-" in by_command[name][1]
    assert (tmp_path / "var").is_dir(), "the engine did not use a fresh data directory"


def test_the_quickstart_block_is_marked() -> None:
    readme = (REPOSITORY / "README.md").read_text()
    assert readme.count(MARKER) == 1
    assert "grpcurl" not in readme
    if "make run" not in readme.split(MARKER, 1)[0]:
        pytest.fail("the README says to start the engine with make run before the quickstart commands")
