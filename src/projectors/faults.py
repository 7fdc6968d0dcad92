"""Which failures of a batch pass by themselves (retry the batch), which come from its events (narrow down).

A transient fault is the database or the broker being away, restarting, overloaded or losing a race: the
same batch will apply later, so it is retried and never parked. PostgreSQL names these by SQLSTATE class.
Anything else (a data exception, a constraint the fold breaks, an event the projection cannot read, a bug)
would fail the same way again: the runner narrows the batch down to the event that fails.
"""

from __future__ import annotations

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError, PersistenceError

TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "55", "57", "58"})
"""08 connection exception, 40 transaction rollback (serialization failure, deadlock), 53 insufficient
resources (too many connections, disk full), 55 object not in prerequisite state (lock not available),
57 operator intervention (shutdown, query cancelled, cannot connect now), 58 system error (I/O)."""


class NotYetPoison(Exception):
    """An event failed alone, but nothing shows yet that the events after it would apply: wait, retry."""


def is_transient(error: BaseException) -> bool:
    """True if retrying the same batch later can succeed without anything in it changing."""
    if isinstance(error, NotYetPoison):
        return True
    if isinstance(error, PersistenceError):
        # eventsourcing's datastore re-raises psycopg's errors as its own, the original as the cause.
        cause = error.__cause__
        if isinstance(cause, psycopg.Error):
            return is_transient(cause)
        return isinstance(error, OperationalError | InterfaceError)
    if isinstance(error, psycopg.Error):
        sqlstate = error.sqlstate
        if sqlstate is None:  # raised by the client: connection lost, pool timeout, ...
            return isinstance(error, psycopg.OperationalError | psycopg.InterfaceError)
        return sqlstate[:2] in TRANSIENT_SQLSTATE_CLASSES
    # A broker or socket away (publishers raise ConnectionError subclasses for refused or returned
    # publishes), or a wait that ran out.
    return isinstance(error, ConnectionError | TimeoutError | OSError)
