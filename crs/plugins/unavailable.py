"""A component that is installed but cannot serve yet, and says why when asked."""
from __future__ import annotations

from crs.hookspecs import Offer, Target, hookimpl
from crs.params import Params


class UnavailableComponent:
    needs_safe_point = False

    def __init__(self, name: str, default_priority: int | None, reason: str) -> None:
        self.name = name
        self.default_priority = default_priority
        self.reason = reason

    @hookimpl
    def crs_query(self, target: Target, params: Params) -> Offer:
        return Offer(self.name, None, self.reason)
