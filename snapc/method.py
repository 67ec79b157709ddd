"""How the ranks of a job are saved at a checkpoint: at safe points by the ``self`` component,
or whole, as process images, by the component the MPI layer was launched for (``blcr`` or
``mtcp``).

The global coordinator decides once per checkpoint, from what every rank reports when it is
asked (``prepare``): whether the program registered a checkpoint callback, and which image
component, if any, its MPI layer serves. All ranks are saved the same way, or none is: a
request that no method can serve fails at once, in one line, instead of waiting for a safe point
that cannot come.
"""
from __future__ import annotations

from dataclasses import dataclass

#: Open MPI's priorities, as the components declare them: the highest usable one is chosen.
PRIORITY = {"self": 20, "mtcp": 15, "blcr": 10}
IMAGE = ("blcr", "mtcp")


class NoMethod(Exception):
    """No way of saving every rank; the message says why and what to do, in one line."""


@dataclass(frozen=True)
class RankReport:
    """What one rank says of itself when a checkpoint is prepared."""

    rank: int
    callbacks: bool  # the program registered a checkpoint callback (crs.on_checkpoint)
    image: str | None  # the component its MPI layer was launched for, None without the layer


def _ranks(ranks: list[int]) -> str:
    return f"rank{'s' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))}"


def callbacks_matter(wanted: set[str] | None, excluded: set[str]) -> bool:
    """Whether the choice may depend on the ranks' callbacks: some component that saves at safe
    points is allowed (with only image components, the ranks are saved whole either way)."""
    names = (set(PRIORITY) if wanted is None else set(wanted)) - excluded
    return bool(names - set(IMAGE))


def choose(wanted: set[str] | None, excluded: set[str], reports: list[RankReport]) -> str:
    """The method for this checkpoint: ``wanted`` are the components the request (or else the
    job's ``crs`` parameter) names, None for any; ``excluded`` those it rules out."""
    names = (set(PRIORITY) if wanted is None else set(wanted)) - excluded
    without_callbacks = [r.rank for r in reports if not r.callbacks]
    images = {r.image for r in reports}
    usable = []
    at_safe_points = names - set(IMAGE)  # self, or a third party's in-process component
    if at_safe_points and (not without_callbacks or at_safe_points != {"self"}):
        usable.append("self")
    for image in IMAGE:
        if image in names and images == {image}:
            usable.append(image)
    if usable:  # "self": at safe points, where each rank selects among in-process components
        return max(usable, key=PRIORITY.__getitem__)

    layer = next(iter(images)) if len(images) == 1 else None
    if names == {"self"}:
        raise NoMethod(f"{_ranks(without_callbacks)}: the program registered no checkpoint "
                       "callback (crs.on_checkpoint), which the self component needs"
                       + (f"; without --mca crs self its ranks are saved whole by {layer}"
                          if layer else ""))
    asked = sorted(names & set(IMAGE)) if wanted is not None else []
    if asked and layer and layer not in asked:
        raise NoMethod(f"the ranks of this job run under the MPI layer and are saved whole by "
                       f"{layer}, not by {asked[0]}")
    if asked and layer is None and None in images:
        raise NoMethod(f"{asked[0]}: cannot save the ranks of a job started without the MPI "
                       f"layer (start it with mpirun -am ft-enable-cr --mca crs {asked[0]})")
    if without_callbacks and len(without_callbacks) < len(reports) and layer is None:
        with_callbacks = [r.rank for r in reports if r.callbacks]
        raise NoMethod(f"{_ranks(with_callbacks)} registered a checkpoint callback and "
                       f"{_ranks(without_callbacks)} did not, and the ranks run without the MPI "
                       "layer: every rank must register one (crs.on_checkpoint)")
    raise NoMethod("the program registered no checkpoint callback (crs.on_checkpoint) and its "
                   "ranks run without the MPI layer, so neither the self component nor a "
                   "process image can save them: register callbacks and call crs.safe_point(), "
                   "or launch on MPICH, where mpirun -am ft-enable-cr saves unmodified ranks "
                   "whole")
