"""Content-addressed blob store for model files: a blob's name is the sha256 of its bytes."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO

from psycopg_pool import ConnectionPool

_SHA256 = re.compile(r"[0-9a-f]{64}")


class TooLarge(Exception):
    """The upload passed the size limit; nothing was stored."""


class PendingBlob:
    """A blob being written: hashed as it arrives, stored under its hash only when committed."""

    def __init__(self, store: BlobStore, limit: int) -> None:
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
        """Store the finished file under its content address; an existing identical blob is kept."""
        sha256 = self._hash.hexdigest()
        self._store.keep(self.path, sha256)
        return sha256

    def discard(self) -> None:
        """Forget the upload."""
        if not self._file.closed:
            self._file.close()
        self.path.unlink(missing_ok=True)


class BlobStore:
    """Receives uploads into a local `incoming` directory; subclasses decide where finished blobs live."""

    def __init__(self, incoming: Path) -> None:
        self.incoming = incoming
        self.incoming.mkdir(parents=True, exist_ok=True)

    def begin(self, limit: int) -> PendingBlob:
        """Start receiving a blob of at most `limit` bytes."""
        return PendingBlob(self, limit)

    def keep(self, path: Path, sha256: str) -> None:
        """Take the finished file at `path` (whose bytes hash to `sha256`) into the store."""
        raise NotImplementedError

    def read(self, sha256: str) -> bytes:
        """The blob's bytes; KeyError if there is none."""
        raise NotImplementedError

    def put_preview(self, content: bytes) -> str:
        """Store a model's preview (pricing.preview) under the sha256 of its bytes, which it returns; storing
        the same bytes again (a redelivered request) changes nothing."""
        raise NotImplementedError

    def read_preview(self, sha256: str) -> bytes:
        """A preview's bytes; KeyError if there is none."""
        raise NotImplementedError


class LocalBlobStore(BlobStore):
    """Blobs in a local directory, fanned out by the first hash bytes: `ab/cd/abcd...`."""

    def __init__(self, root: Path) -> None:
        super().__init__(root / "incoming")
        self.root = root

    def keep(self, path: Path, sha256: str) -> None:
        target = self.path(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)

    def path(self, sha256: str) -> Path:
        """Where the blob with this hash lives (whether or not it exists)."""
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        """Whether the blob is stored."""
        return self.path(sha256).is_file()

    def read(self, sha256: str) -> bytes:
        try:
            return self.path(sha256).read_bytes()
        except FileNotFoundError:
            raise KeyError(sha256) from None

    def preview_path(self, sha256: str) -> Path:
        """Where the preview with this hash lives, beside the models: `previews/ab/cd/abcd...`."""
        return self.root / "previews" / sha256[:2] / sha256[2:4] / sha256

    def put_preview(self, content: bytes) -> str:
        sha256 = hashlib.sha256(content).hexdigest()
        target = self.preview_path(sha256)
        if target.is_file():
            return sha256
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.incoming, prefix="preview-")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(content)
                file.flush()
                os.fsync(file.fileno())
            os.replace(name, target)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        return sha256

    def read_preview(self, sha256: str) -> bytes:
        if not _SHA256.fullmatch(sha256):
            raise KeyError(sha256)
        try:
            return self.preview_path(sha256).read_bytes()
        except FileNotFoundError:
            raise KeyError(sha256) from None


class PostgresBlobStore(BlobStore):
    """Blobs in table blobs.models, so workers on other machines read models with no shared filesystem."""

    def __init__(self, dsn: str, incoming: Path, connections: int = 4) -> None:
        super().__init__(incoming)
        self.dsn = dsn
        # A few pooled connections, opened when first needed: a connection per upload or read spent the
        # server's connection slots under load ("too many clients") and a handshake each time.
        self.pool = ConnectionPool(dsn, min_size=0, max_size=connections, open=True)

    def keep(self, path: Path, sha256: str) -> None:
        content = path.read_bytes()
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO blobs.models (sha256, size_bytes, content) VALUES (%s, %s, %s) "
                "ON CONFLICT (sha256) DO NOTHING",
                (sha256, len(content), content),
            )
        path.unlink(missing_ok=True)

    def read(self, sha256: str) -> bytes:
        with self.pool.connection() as conn:
            # Binary format: in text a bytea travels hex-encoded, twice its size, and costs the server more.
            query = "SELECT content FROM blobs.models WHERE sha256 = %s"
            row = conn.execute(query, (sha256,), binary=True).fetchone()
        if row is None:
            raise KeyError(sha256)
        return bytes(row[0])

    def put_preview(self, content: bytes) -> str:
        sha256 = hashlib.sha256(content).hexdigest()
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO blobs.previews (sha256, size_bytes, content) VALUES (%s, %s, %s) "
                "ON CONFLICT (sha256) DO NOTHING",
                (sha256, len(content), content),
            )
        return sha256

    def read_preview(self, sha256: str) -> bytes:
        with self.pool.connection() as conn:
            query = "SELECT content FROM blobs.previews WHERE sha256 = %s"
            row = conn.execute(query, (sha256,), binary=True).fetchone()
        if row is None:
            raise KeyError(sha256)
        return bytes(row[0])
