"""How every pycrs tool reports failure: one line naming the problem, and a non-zero exit."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn


def expected() -> tuple[type[Exception], ...]:
    """The failures a tool reports in one line. Imported when one is caught, so that a tool
    whose arguments are wrong (or that was asked for --help) does not load the framework."""
    from crs.endpoint import EndpointError
    from crs.framework import ComponentError, CRSError
    from crs.params import ParamError
    from crs.runtime import CheckpointError
    from crs.snapshot import SnapshotError

    return (EndpointError, ComponentError, CRSError, ParamError, CheckpointError, SnapshotError,
            OSError)


class UsageError(Exception):
    """Bad command-line input that argparse cannot catch."""


def fail(tool: str, message: str, code: int = 1) -> NoReturn:
    print(f"{tool}: {message}", file=sys.stderr)
    sys.exit(code)


def run_tool(tool: str, body: Callable[[], int]) -> NoReturn:
    """Run a tool's body; turn every expected failure into one line on stderr."""
    try:
        code = body()
    except UsageError as exc:
        fail(tool, str(exc), 2)
    except Exception as exc:
        if not isinstance(exc, expected()):
            raise
        if isinstance(exc, OSError) and exc.filename:
            fail(tool, f"{exc.filename}: {exc.strerror or exc}")
        fail(tool, str(exc))
    except KeyboardInterrupt:
        fail(tool, "interrupted", 130)
    sys.exit(code)


class ToolParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line and exit code 2."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        fail(self.prog, f"{message} (see {self.prog} --help)", 2)
