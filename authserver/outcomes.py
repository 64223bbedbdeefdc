"""What a service function returns when what it is asked for may hold already."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic
from typing import TypeVar

Row = TypeVar("Row")


@dataclass(frozen=True)
class Outcome(Generic[Row]):
    """``row`` as the call left it, and whether the call changed it.

    A service asked for what holds already (suspend a suspended tenant, link the account linked
    already) changes and audits nothing and says so here, so its caller can tell the operator
    without reading the row a second time to compare.
    """

    row: Row
    changed: bool
