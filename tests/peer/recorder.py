"""Runs modules of mpi4py's own test suite in one MPI rank and records each test's outcome.

Usage (inside a job): python recorder.py SUITE_DIR OUT_DIR MODULE [MODULE...]

mpi4py's runner (SUITE_DIR/main.py) runs the modules as it always does; every test's outcome is
also written, one line as it completes, to OUT_DIR/rank-<R>.txt ("<outcome> <test id>"), and
"END <exit status>" when the run is over. The file is opened without O_APPEND and written with
plain writes: if the rank is restored from an image taken mid-run, the file is cut back with it
and the tests after the image are recorded once, by the restored rank.
"""
from __future__ import annotations

import os
import sys
import unittest

SUITE, OUT, MODULES = sys.argv[1], sys.argv[2], sys.argv[3:]


class Recording(unittest.TextTestResult):
    """unittest's text result that also writes each outcome to this rank's record."""

    record = None

    def _write(self, outcome: str, test: unittest.TestCase) -> None:
        if Recording.record is None:
            from mpi4py import MPI

            path = os.path.join(OUT, f"rank-{MPI.COMM_WORLD.Get_rank()}.txt")
            Recording.record = open(path, "w", buffering=1, encoding="utf-8")  # noqa: SIM115
        Recording.record.write(f"{outcome} {test.id()}\n")

    def addSuccess(self, test):  # noqa: N802 - unittest's names
        super().addSuccess(test)
        self._write("ok", test)

    def addFailure(self, test, err):  # noqa: N802
        super().addFailure(test, err)
        self._write("FAIL", test)

    def addError(self, test, err):  # noqa: N802
        super().addError(test, err)
        self._write("ERROR", test)

    def addSkip(self, test, reason):  # noqa: N802
        super().addSkip(test, reason)
        self._write("skip", test)

    def addExpectedFailure(self, test, err):  # noqa: N802
        super().addExpectedFailure(test, err)
        self._write("xfail", test)

    def addUnexpectedSuccess(self, test):  # noqa: N802
        super().addUnexpectedSuccess(test)
        self._write("XPASS", test)

    def addSubTest(self, test, subtest, err):  # noqa: N802
        super().addSubTest(test, subtest, err)
        if err is not None:
            failed = issubclass(err[0], test.failureException)
            self._write("FAIL" if failed else "ERROR", subtest)


def main() -> None:
    sys.path.insert(0, SUITE)
    sys.argv = [os.path.join(SUITE, "main.py"), *MODULES]
    sys.dont_write_bytecode = True
    unittest.TextTestRunner.resultclass = Recording
    import main as suite_main  # mpi4py's test/main.py

    status = 0
    try:
        suite_main.main(module=None)
    except SystemExit as e:
        status = 0 if e.code is None else int(e.code) if isinstance(e.code, int) else 1
    if Recording.record is not None:
        Recording.record.write(f"END {status}\n")
        Recording.record.close()
    sys.exit(status)


if __name__ == "__main__":
    main()
