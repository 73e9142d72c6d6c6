"""The `loopml` command's entry point, kept light: work that needs none of the CLI's libraries starts before they
load. `loopml validate FILE` starts the file's SHA-256 on another thread here, so it overlaps loading click,
pydantic, numpy and pyarrow (about 0.2 s on one core) instead of competing with the parse for the cores after it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

_VALUE_OPTIONS = {"--contract", "--max-issue-rows"}  # options of `validate` that take a value


def main() -> None:
    args = sys.argv[1:]
    validating = args[:1] == ["validate"]
    if validating:
        _hash_ahead(args[1:])
    from infra.cli.main import main as run

    if not validating:
        run()
        return
    try:
        run()
        code: object = 0
    except SystemExit as finished:
        code = finished.code
    _exit_at_once(code)


def _exit_at_once(code: object) -> None:
    """End `validate` without the interpreter's teardown: unloading pyarrow, numpy and pydantic takes about 40 ms
    (a twentieth of validating a 240 MB file) and does nothing for a command whose output is written and whose
    threads are done. The command registers no exit handler; its output is flushed here."""
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 0)


def _hash_ahead(args: list[str]) -> None:
    """The first argument that is not an option nor an option's value, if it names a file (a wrong guess costs
    only the thread: the command hashes what it reads when no digest was started for its file)."""
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in _VALUE_OPTIONS:
            skip = True
        elif not arg.startswith("-"):
            path = Path(arg)
            if path.is_file():
                from loopml_core import digest

                digest.start(path)
            return
