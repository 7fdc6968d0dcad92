"""Verified bearer tokens are remembered, but never past their expiry."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from http_edge.identity import TokenError, mint_token, verify_token
from orders_core.actors import Actor
from orders_core.lifecycle import Role

SECRET = "token-cache-secret-" + "x" * 32


def test_a_remembered_token_names_the_same_actor() -> None:
    token = mint_token(SECRET, Role.SELLER, "alice")
    assert verify_token(SECRET, token) == verify_token(SECRET, token) == Actor(Role.SELLER, "alice")


def test_a_remembered_token_is_refused_once_it_expires() -> None:
    token = mint_token(SECRET, Role.CUSTOMER, "bob", ttl=timedelta(seconds=1))
    assert verify_token(SECRET, token) == Actor(Role.CUSTOMER, "bob")
    time.sleep(1.1)
    with pytest.raises(TokenError, match="expired"):
        verify_token(SECRET, token)


def test_a_token_remembered_under_one_secret_is_refused_under_another() -> None:
    token = mint_token(SECRET, Role.ADMIN, "carol")
    verify_token(SECRET, token)
    with pytest.raises(TokenError, match="invalid token"):
        verify_token("another-secret-" + "y" * 32, token)
