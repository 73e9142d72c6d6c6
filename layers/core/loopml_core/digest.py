"""A local file's SHA-256, computed ahead on another thread.

hashlib releases the GIL while it hashes, so on a machine with a second core the digest of a local file is ready by
the time validation has loaded its libraries and parsed the file, instead of adding its cost to theirs. Standard
library only: it is started before the heavy imports it overlaps with.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

# Large blocks: the thread needs the GIL between blocks, and the imports it overlaps hold it for up to the switch
# interval (5 ms) at a time; at 4 MB a block, waiting for it cost as much as the hashing saved.
BLOCK_BYTES = 32 << 20


class DigestAhead:
    def __init__(self, path: Path) -> None:
        self._digest = hashlib.sha256()
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._hash, args=(path,), name="sha256-ahead", daemon=True)
        self._thread.start()

    def _hash(self, path: Path) -> None:
        try:
            block = bytearray(BLOCK_BYTES)
            view = memoryview(block)
            with path.open("rb", buffering=0) as file:
                while read := file.readinto(view):
                    self._digest.update(view[:read])
        except OSError as error:  # raised where the digest is asked for, as reading the file there would
            self._error = error

    def hexdigest(self) -> str:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._digest.hexdigest()


_started: dict[Path, DigestAhead] = {}


def start(path: Path) -> None:
    """Start hashing `path` now, for whoever asks `ahead_for` it later in this process."""
    _started.setdefault(path.resolve(), DigestAhead(path))


def ahead_for(path: Path) -> DigestAhead | None:
    return _started.get(path.resolve())
