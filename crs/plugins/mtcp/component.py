"""The ``mtcp`` CRS component: an in-process user-space checkpoint kernel.

Installed before it works so that ``pycrs info`` and selection can name it and say why it
cannot serve yet, instead of calling it unknown.
"""
from crs.plugins.unavailable import UnavailableComponent

component = UnavailableComponent(
    "mtcp", 15, "not available yet: the checkpoint kernel is not built in this release"
)
