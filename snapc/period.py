"""When a job checkpoints itself: ``snapc_base_period`` is 0 (never: only on request), a number
of seconds between the end of one checkpoint and the start of the next, or ``auto``: Young's
optimal interval sqrt(2 C M) for the job's own checkpoint cost C (the mean of its last few
checkpoints, re-computed after each) and the mean time between failures M
(``snapc_base_mtbf``)."""
from __future__ import annotations

import math
from collections import deque

from crs.params import ParamError, Params

#: the cost assumed before the job has measured one (seconds)
FIRST_COST = 1.0
#: how many recent checkpoints the cost is the mean of
WINDOW = 3


class Period:
    """The interval before the next periodic checkpoint, from the parameters and the costs
    measured so far; ``None`` when the job does not checkpoint itself."""

    def __init__(self, params: Params) -> None:
        text = params.get("snapc_base_period").strip().lower()
        self.auto = text == "auto"
        self.mtbf = float(params.get_int("snapc_base_mtbf"))
        if self.auto:
            self.fixed = None
            if self.mtbf <= 0:
                raise ParamError(f"parameter snapc_base_mtbf: {self.mtbf:g} must be positive for "
                                 "snapc_base_period auto")
        else:
            try:
                self.fixed = float(text)
            except ValueError:
                raise ParamError(f"parameter snapc_base_period: {text!r} is not a number of "
                                 "seconds, 0 or auto") from None
            if not math.isfinite(self.fixed) or self.fixed < 0:
                raise ParamError(f"parameter snapc_base_period: {text!r} must be 0 (off), a "
                                 "positive number of seconds or auto")
        self.costs: deque[float] = deque(maxlen=WINDOW)

    @property
    def enabled(self) -> bool:
        return self.auto or bool(self.fixed)

    def measured(self, seconds: float) -> None:
        """A checkpoint of the job took ``seconds``, from request to commit."""
        self.costs.append(seconds)

    def cost(self) -> float:
        return sum(self.costs) / len(self.costs) if self.costs else FIRST_COST

    def interval(self) -> float | None:
        if not self.enabled:
            return None
        if self.fixed:
            return self.fixed
        # Young's first-order optimum; never less than twice the cost, so the job runs more
        # than it checkpoints even when the MTBF is absurdly small
        return max(math.sqrt(2.0 * self.cost() * self.mtbf), 2.0 * self.cost())

    def describe(self) -> str:
        """The next interval and, with auto, what it was computed from (for the job's log)."""
        interval = self.interval() or 0.0
        if not self.auto:
            return f"next in {interval:.1f} s"
        return (f"next in {interval:.1f} s (auto: cost {self.cost():.2f} s, the mean of the last "
                f"{len(self.costs)}, MTBF {self.mtbf:g} s)")
