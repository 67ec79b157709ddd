"""``pycrs``: ``pycrs run PROGRAM...`` starts a process under pycrs; ``pycrs info`` lists every
component with its priority and every parameter with its value and where that value came from."""
from __future__ import annotations

import argparse
import os
import shutil
import sys

from crs import params

from .errors import ToolParser, UsageError, run_tool

TOOL = "pycrs"


class _Program(argparse.Action):
    """The program and its arguments: everything from the first word that is not an option of
    pycrs run, its own options included (a ``--`` before it is allowed, and dropped)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        program = list(values)  # type: ignore[call-overload]
        if program[:1] == ["--"]:
            program = program[1:]
        if not program:
            parser.error("the following arguments are required: PROGRAM")
        setattr(namespace, self.dest, program)


def build_parser() -> ToolParser:
    p = ToolParser(prog=TOOL, description="Run a program with checkpoint/restart enabled, or "
                   "list the CRS components and the MCA parameters with their values.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=ToolParser)
    run = sub.add_parser("run", help="run a program with checkpoint/restart enabled",
                         description="Run a program with checkpoint/restart enabled: "
                         "opal-checkpoint PID saves it, opal-restart brings it back.",
                         usage="pycrs run [-h] [--mca NAME VALUE] [-am SET] [--] PROGRAM [ARGS...]")
    params.add_arguments(run)
    run.add_argument("program", nargs=argparse.REMAINDER, action=_Program, metavar="PROGRAM",
                     help="the command to run with its arguments, e.g. python app.py -v: "
                          "everything after pycrs's own options is the program's")
    info = sub.add_parser("info", help="list components and parameters",
                          description="List the CRS components with their priorities here, and "
                          "every MCA parameter with its value and where the value came from.")
    params.add_arguments(info)
    return p


def _info(prm: params.Params) -> int:
    from crs import framework
    from crs.hookspecs import Target

    target = Target(os.getpid(), in_process=False)
    print("CRS components (priority; selection by the 'crs' parameter, else highest priority):")
    for offer in framework.offers(target, prm):
        static = getattr(framework.manager().get_plugin(offer.component), "default_priority", None)
        status = f"priority {offer.priority}" if offer.priority is not None else offer.reason
        print(f"  {offer.component:<6} default priority {static if static is not None else '-'}; "
              f"here: {status}")
    print("\nMCA parameters (value, then where it came from):")
    specs = {s.name: s for s in params.registered()}
    for pv in prm.all_values():
        note = "" if pv.name in specs else "  [not a pycrs parameter]"
        print(f"  {pv.name} = {pv.value!r}  ({pv.source}){note}")
        if pv.name in specs:
            print(f"      {specs[pv.name].help}")
    return 0


def _run_program(prm: params.Params, program: list[str]) -> int:
    from crs import framework
    from crs.launch import cr_environment

    exe = shutil.which(program[0])
    if exe is None:
        raise UsageError(f"program not found: {program[0]}")
    env = cr_environment(os.environ, prm.child_env())
    include, _ = framework.parse_selection(prm.get("crs"))
    if include and "mtcp" in include:  # the checkpoint kernel, preloaded into any program
        from crs.plugins.mtcp import library_path

        preload = [p for p in env.get("LD_PRELOAD", "").split() if p != str(library_path())]
        env["LD_PRELOAD"] = " ".join([str(library_path()), *preload])
    sys.stdout.flush()
    os.execve(exe, program, env)
    return 0  # not reached


def _main(argv: list[str] | None) -> int:
    ns = build_parser().parse_args(argv)
    from crs import framework, layers  # after parsing: --help does not load them

    prm = params.from_arguments(ns)
    framework.manager()  # importing components registers their parameters
    layers.load()  # and loading the layers above the framework (SnapC), theirs
    prm.validate()  # reject a missing set or a malformed value before printing or starting anything
    if ns.command == "info":
        return _info(prm)
    return _run_program(prm, ns.program)


def main(argv: list[str] | None = None) -> None:
    run_tool(TOOL, lambda: _main(argv))
