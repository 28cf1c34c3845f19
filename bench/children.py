"""One measurement in a fresh interpreter: the child is `python -m MODULE FLAG SPEC`, and
prints its figures as one line `RESULT {json}` (the last one counts)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def run_child(
    module: str, flag: str, spec: dict[str, Any], timeout: float, label: str
) -> dict[str, Any] | None:
    """The child's RESULT, or None (said on stderr) when it failed or printed none."""
    done = subprocess.run(
        [sys.executable, "-m", module, flag, json.dumps(spec)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        print(f"  {label}: the child exited with {done.returncode}", file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    return result
