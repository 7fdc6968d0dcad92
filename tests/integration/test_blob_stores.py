"""Both blob stores keep a model under its sha256 and give back exactly its bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from orders_core.blobs import BlobStore, LocalBlobStore, PostgresBlobStore, TooLarge


@pytest.fixture(params=["local", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return LocalBlobStore(tmp_path / "blobs")
    database: str = request.getfixturevalue("database")
    return PostgresBlobStore(database, tmp_path / "incoming")


def upload(store: BlobStore, content: bytes, limit: int = 1 << 20) -> str:
    pending = store.begin(limit)
    for start in range(0, len(content), 1000):
        pending.write(content[start : start + 1000])
    pending.finish()
    return pending.commit()


def test_a_blob_is_read_back_by_its_sha256(store: BlobStore) -> None:
    content = bytes(range(256)) * 40
    sha = upload(store, content)
    assert sha == hashlib.sha256(content).hexdigest()
    assert store.read(sha) == content
    assert list(store.incoming.iterdir()) == []


def test_storing_the_same_bytes_twice_keeps_one_blob(store: BlobStore) -> None:
    assert upload(store, b"solid ring") == upload(store, b"solid ring")


def test_an_unknown_blob_is_a_key_error(store: BlobStore) -> None:
    with pytest.raises(KeyError):
        store.read("0" * 64)


def test_an_upload_over_the_limit_is_refused(store: BlobStore) -> None:
    with pytest.raises(TooLarge):
        upload(store, b"x" * 5000, limit=4000)


def test_a_preview_is_stored_by_its_sha256_once_and_read_back(store: BlobStore) -> None:
    content = b"glTF" + bytes(range(256)) * 8
    sha = store.put_preview(content)
    assert sha == hashlib.sha256(content).hexdigest()
    assert store.put_preview(content) == sha  # a redelivered request stores nothing new
    assert store.read_preview(sha) == content
    assert list(store.incoming.iterdir()) == []
    with pytest.raises(KeyError):
        store.read_preview("0" * 64)
    with pytest.raises(KeyError):
        store.read(sha)  # previews are not models


def test_a_preview_is_looked_up_by_a_sha256_only(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    with pytest.raises(KeyError):
        store.read_preview("../../../etc/passwd")
