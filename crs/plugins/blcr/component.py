"""The ``blcr`` CRS component: a native ptrace dumper and restorer (priority 10 once built).

Installed before it works so that ``pycrs info`` and selection can name it and say why it
cannot serve yet, instead of calling it unknown.
"""
from crs.plugins.unavailable import UnavailableComponent

component = UnavailableComponent(
    "blcr", 10, "not available yet: the ptrace dumper is not built in this release"
)
