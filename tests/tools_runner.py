"""Runs the project's scripts (`tools/*.py`, `benchmarks/*.py`) the way a user does: a real
subprocess of this interpreter, started in the repository root, so tests see exactly the exit
code, stdout and stderr a user would.

`script` is a path relative to the repository root, e.g. "tools/optimize.py". `env` adds to
(or overrides) the test process's environment; the child always inherits the rest of it, which
keeps PYTHONPATH and so the `nlighten_tf` under test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tool_command(script: str, *args: object) -> list[str]:
    """The argv that runs `script` with `args` (each turned into a string)."""
    return [sys.executable, str(REPO / script), *map(str, args)]


def _environment(env: Mapping[str, str] | None) -> dict[str, str] | None:
    return None if env is None else {**os.environ, **env}


def run_tool(
    script: str, *args: object, timeout: float = 600, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs `script` to its end and returns its exit code and text output (stdout, stderr)."""
    return subprocess.run(
        tool_command(script, *args), capture_output=True, text=True, cwd=REPO, timeout=timeout, env=_environment(env)
    )


def start_tool(script: str, *args: object, log: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen:
    """Starts `script` in the background, its stdout and stderr both written to the file `log`
    (for tests that signal it, or watch its progress, while it runs)."""
    with log.open("w") as handle:
        return subprocess.Popen(
            tool_command(script, *args), stdout=handle, stderr=subprocess.STDOUT, cwd=REPO, env=_environment(env)
        )
