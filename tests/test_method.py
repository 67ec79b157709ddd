"""How the ranks of a job are saved at a checkpoint (snapc.method.choose): one way for all, the
highest priority that can serve every rank, or one line that says why none can."""
from __future__ import annotations

import pytest

from snapc.method import NoMethod, RankReport, choose


def ranks(callbacks: list[bool], image: str | None) -> list[RankReport]:
    return [RankReport(r, c, image) for r, c in enumerate(callbacks)]


@pytest.mark.parametrize("wanted, excluded, reports, chosen", [
    (None, set(), ranks([False] * 3, "blcr"), "blcr"),          # unmodified program, MPICH
    (None, set(), ranks([False] * 3, "mtcp"), "mtcp"),
    (None, set(), ranks([True] * 3, "blcr"), "self"),           # callbacks win (priority 20)
    (None, set(), ranks([True] * 3, None), "self"),             # Open MPI, safe points
    (None, set(), ranks([True, False, True], "blcr"), "blcr"),  # not all callbacks: whole
    ({"blcr"}, set(), ranks([True] * 2, "blcr"), "blcr"),       # asked for: whole
    ({"self"}, set(), ranks([True] * 2, "blcr"), "self"),
    (None, {"self"}, ranks([True] * 2, "blcr"), "blcr"),        # ^self
    ({"self", "blcr"}, set(), ranks([True] * 2, "blcr"), "self"),
    ({"mine"}, set(), ranks([False] * 2, None), "self"),        # a third party's, at safe points
])
def test_chosen(wanted: set[str] | None, excluded: set[str], reports: list[RankReport],
                chosen: str) -> None:
    assert choose(wanted, excluded, reports) == chosen


@pytest.mark.parametrize("wanted, excluded, reports, words", [
    (None, set(), ranks([False] * 2, None),
     "registered no checkpoint callback (crs.on_checkpoint) and its ranks run without the MPI "
     "layer"),
    (None, set(), ranks([True, False, False], None),
     "rank 0 registered a checkpoint callback and ranks 1, 2 did not"),
    ({"self"}, set(), ranks([False, True, False], "blcr"),
     "ranks 0, 2: the program registered no checkpoint callback (crs.on_checkpoint), which the "
     "self component needs; without --mca crs self its ranks are saved whole by blcr"),
    ({"mtcp"}, set(), ranks([False] * 2, "blcr"), "are saved whole by blcr, not by mtcp"),
    ({"blcr"}, set(), ranks([True] * 2, None),
     "blcr: cannot save the ranks of a job started without the MPI layer"),
    (None, {"blcr"}, ranks([False] * 2, "blcr"), "registered no checkpoint callback"),
])
def test_none_can_serve(wanted: set[str] | None, excluded: set[str], reports: list[RankReport],
                        words: str) -> None:
    with pytest.raises(NoMethod) as err:
        choose(wanted, excluded, reports)
    assert words in str(err.value) and "\n" not in str(err.value), str(err.value)
