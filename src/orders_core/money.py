"""Money as integer minor units plus an ISO 4217 currency code; never a float."""

from __future__ import annotations

from typing import Annotated

import msgspec

CurrencyCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. EUR")]
MinorUnits = Annotated[int, msgspec.Meta(ge=0, le=10**13, description="amount in minor units (cents)")]


class Money(msgspec.Struct, frozen=True, kw_only=True):
    """An amount in minor units of one currency."""

    amount_minor: MinorUnits
    currency: CurrencyCode

    def __add__(self, other: Money) -> Money:
        if other.currency != self.currency:
            raise ValueError(f"cannot add {other.currency} to {self.currency}")
        return Money(amount_minor=self.amount_minor + other.amount_minor, currency=self.currency)

    def times(self, quantity: int) -> Money:
        """This amount, `quantity` times."""
        return Money(amount_minor=self.amount_minor * quantity, currency=self.currency)
