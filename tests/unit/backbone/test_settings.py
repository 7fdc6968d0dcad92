"""Settings read from the environment: the ones that loosen a security check turn on only when meant to."""

from __future__ import annotations

import pytest

from backbone.settings import Settings

BASE = {"JWT_SECRET": "x" * 40}


def test_private_webhook_addresses_are_refused_by_default() -> None:
    assert Settings.from_env(BASE).webhook_allow_private is False


@pytest.mark.parametrize(("value", "allowed"), [("1", True), ("0", False), ("", False)])
def test_webhook_allow_private_is_1_or_0(value: str, allowed: bool) -> None:
    assert Settings.from_env({**BASE, "WEBHOOK_ALLOW_PRIVATE": value}).webhook_allow_private is allowed


@pytest.mark.parametrize("value", ["yes", "true", "2", "on"])
def test_any_other_value_of_webhook_allow_private_is_an_error(value: str) -> None:
    with pytest.raises(ValueError, match="WEBHOOK_ALLOW_PRIVATE"):
        Settings.from_env({**BASE, "WEBHOOK_ALLOW_PRIVATE": value})
