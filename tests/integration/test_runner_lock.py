"""The active runner's lock is checked, not pinged: a runner whose statements no longer reach the session
that took the lock (a pooler in transaction mode) steps down rather than write beside another runner."""

from __future__ import annotations

import threading

import psycopg
import pytest

from backbone.wiring import projection_runner
from projectors.runner import LockLost, SessionLock, _try_lock, lock_key


def test_the_lock_holds_only_on_the_session_that_took_it(database: str) -> None:
    key = lock_key(f"lock-test-{threading.get_ident()}")
    with (
        psycopg.connect(database, autocommit=True) as first,
        psycopg.connect(database, autocommit=True) as second,
    ):
        lock = _try_lock(first, key)
        assert lock is not None
        lock.check()
        assert _try_lock(second, key) is None, "a second session took a lock the first holds"
        # `second` standing for the server session a transaction-mode pooler hands the next statement to
        with pytest.raises(LockLost, match="transaction mode"):
            SessionLock(second, key, lock.pid).check()
        first.execute("SELECT pg_advisory_unlock(%s)", (key,))
        with pytest.raises(LockLost):
            lock.check()


def test_a_runner_whose_session_changed_steps_down(database: str) -> None:
    runner = projection_runner("mes", database)
    key = lock_key("mes")
    with (
        psycopg.connect(database, autocommit=True) as took_it,
        psycopg.connect(database, autocommit=True) as serves_now,
    ):
        lock = _try_lock(took_it, key)
        assert lock is not None
        stop = threading.Event()
        with pytest.raises(LockLost):
            runner._follow(stop, SessionLock(serves_now, key, lock.pid), "test")
        assert not stop.is_set()
