"""How urgent an approved order is, in words an operator reads at a glance: pure, the clock passed in.

The slack is the time left before manufacturing must start to keep the promise (`start_by`, derived by
the MES projection from the promised date and the material's expected manufacturing time). The words say
why an order sits where it does in the queue: "overdue 2 d", "due in 5 h, needs 2 d", "due in 9 d".
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import msgspec


class Urgency(msgspec.Struct, frozen=True):
    """The slack in seconds (negative: manufacturing should have started) and the row's words."""

    slack_seconds: int
    text: str


def urgency_of(promised_date: date | None, start_by: datetime | None, now: datetime) -> Urgency | None:
    """The urgency of an order promised for `promised_date` that must start by `start_by`; None for an
    order with no open promise."""
    if promised_date is None or start_by is None:
        return None
    due = datetime.combine(promised_date + timedelta(days=1), time(), UTC)
    slack = start_by - now
    if now >= due:
        text = f"overdue {span(now - due)}"
    elif slack < timedelta(0):
        text = f"due in {span(due - now)}, needs {span(due - start_by)}"
    else:
        text = f"due in {span(due - now)}"
    return Urgency(int(slack.total_seconds()), text)


def span(duration: timedelta) -> str:
    """A duration as an operator says it: minutes under an hour, hours under two days, then days."""
    seconds = max(0, int(duration.total_seconds()))
    if seconds < 3600:
        return f"{max(1, seconds // 60)} min"
    if seconds < 48 * 3600:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"
