"""The CRS framework: discovers components, selects one, and calls it through pluggy."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pluggy

from . import hookspecs
from .hookspecs import Offer, Target
from .params import Params


class ComponentError(Exception):
    """The requested component does not exist or cannot serve; the message says which and why."""


class CRSError(Exception):
    """A component could not do what it was asked (save or restore a process); the message
    says why in one line."""


_manager: pluggy.PluginManager | None = None


def manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, with every installed component loaded."""
    global _manager
    if _manager is None:
        pm = pluggy.PluginManager(hookspecs.PROJECT)
        pm.add_hookspecs(hookspecs.CRSSpec)
        _load_components(pm)
        _manager = pm
    return _manager


def _load_components(pm: pluggy.PluginManager) -> None:
    """Register every component of the entry-point group. One that cannot be loaded (a broken
    third-party package) is registered as unavailable, with the reason, instead of taking every
    tool down with it."""
    from importlib import metadata  # here: importing it takes longer than the framework

    from .plugins.unavailable import UnavailableComponent

    for ep in metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP):
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as exc:  # noqa: BLE001 - whatever a third-party import raises
            why = f"cannot be loaded from {ep.value}: {type(exc).__name__}: {exc}"
            pm.register(UnavailableComponent(ep.name, None, why), name=ep.name)


def component_names() -> list[str]:
    """Names of the installed CRS components."""
    pm = manager()
    return sorted(n for n, p in pm.list_name_plugin() if _is_component(p))


def _is_component(plugin: object) -> bool:
    return hasattr(plugin, "crs_query")


def parse_selection(text: str) -> tuple[set[str] | None, set[str]]:
    """Open MPI's include/exclude syntax: ``a,b`` includes, ``^a,b`` excludes."""
    text = text.strip()
    if not text:
        return None, set()
    if text.startswith("^"):
        return None, {n.strip() for n in text[1:].split(",") if n.strip()}
    return {n.strip() for n in text.split(",") if n.strip()}, set()


@dataclass(frozen=True)
class Component:
    """A selected component: its name and a way to call its hooks alone."""

    name: str
    priority: int

    def call(self, hook: str, **kwargs: Any) -> Any:
        """Call one of this component's hooks (and no other component's)."""
        pm = manager()
        plugin = pm.get_plugin(self.name)
        others = [p for n, p in pm.list_name_plugin() if p is not plugin and _is_component(p)]
        return pm.subset_hook_caller(hook, remove_plugins=others)(**kwargs)


def offers(target: Target, params: Params) -> list[Offer]:
    """Every installed component's answer for ``target``, whether it could serve or not."""
    pm = manager()
    found: list[Offer] = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: item[0]):
        if not _is_component(plugin):
            continue
        try:
            offer = plugin.crs_query(target=target, params=params)
        except Exception as exc:  # noqa: BLE001 - a component's failure is its reason not to serve
            offer = Offer(name, None, f"query failed: {type(exc).__name__}: {exc}")
        if offer is None:
            offer = Offer(name, None, "declined")
        elif offer.component != name:  # selection and calls go by the registered name
            offer = Offer(name, offer.priority, offer.reason)
        found.append(offer)
    return found


def select(target: Target, params: Params, only: str | None = None) -> Component:
    """Pick the component for ``target``: ``only`` if given, else the ``crs`` parameter, else
    the highest priority. Raises ComponentError naming the problem."""
    installed = component_names()
    include, exclude = parse_selection(only if only is not None else params.get("crs"))
    unknown = sorted(((include or set()) | exclude) - set(installed))
    if unknown:
        raise ComponentError(
            f"unknown CRS component {', '.join(unknown)} (installed: {', '.join(installed)})"
        )
    candidates = [
        o for o in offers(target, params)
        if (include is None or o.component in include) and o.component not in exclude
    ]
    usable = [o for o in candidates if o.priority is not None]
    if not usable:
        why = "; ".join(f"{o.component}: {o.reason}" for o in candidates) or "all excluded"
        raise ComponentError(f"no CRS component can checkpoint process {target.pid} ({why})")
    best = max(usable, key=lambda o: o.priority or 0)
    return Component(best.component, best.priority or 0)


def component_for_snapshot(name: str) -> Component:
    """The component that must restart a snapshot taken with ``name``."""
    if name not in component_names():
        raise ComponentError(
            f"snapshot needs CRS component {name!r}, which is not installed "
            f"(installed: {', '.join(component_names())})"
        )
    return Component(name, 0)


def broadcast_ft_event(state: hookspecs.State) -> None:
    """Tell every plugin (components and other layers) about a phase."""
    manager().hook.crs_ft_event(state=state)
