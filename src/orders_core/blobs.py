"""Content-addressed blob store for model files: a blob's name is the sha256 of its bytes."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO


class TooLarge(Exception):
    """The upload passed the size limit; nothing was stored."""


class PendingBlob:
    """A blob being written: hashed as it arrives, stored under its hash only when committed."""

    def __init__(self, store: LocalBlobStore, limit: int) -> None:
        self._store = store
        self._limit = limit
        self._hash = hashlib.sha256()
        fd, name = tempfile.mkstemp(dir=store.incoming, prefix="upload-")
        self._file: BinaryIO = os.fdopen(fd, "wb")
        self.path = Path(name)
        self.size = 0

    def write(self, chunk: bytes) -> None:
        """Append a chunk; raises TooLarge past the limit."""
        self.size += len(chunk)
        if self.size > self._limit:
            raise TooLarge(f"the upload is larger than the {self._limit} bytes allowed")
        self._hash.update(chunk)
        self._file.write(chunk)

    def finish(self) -> str:
        """Flush to disk and return the sha256 (the blob's future name)."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        return self._hash.hexdigest()

    def commit(self) -> str:
        """Move the finished file to its content address; an existing identical blob is kept."""
        sha256 = self._hash.hexdigest()
        target = self._store.path(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.path, target)
        return sha256

    def discard(self) -> None:
        """Forget the upload."""
        if not self._file.closed:
            self._file.close()
        self.path.unlink(missing_ok=True)


class LocalBlobStore:
    """Blobs in a local directory, fanned out by the first hash bytes: `ab/cd/abcd...`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.incoming = root / "incoming"
        self.incoming.mkdir(parents=True, exist_ok=True)

    def begin(self, limit: int) -> PendingBlob:
        """Start receiving a blob of at most `limit` bytes."""
        return PendingBlob(self, limit)

    def path(self, sha256: str) -> Path:
        """Where the blob with this hash lives (whether or not it exists)."""
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        """Whether the blob is stored."""
        return self.path(sha256).is_file()

    def read(self, sha256: str) -> bytes:
        """The blob's bytes."""
        return self.path(sha256).read_bytes()
