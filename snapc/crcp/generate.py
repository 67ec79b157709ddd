"""Generate the part of the MPI layer that is the same for many functions (crcp_wrappers.inc).

Read from MPICH's ``mpi_proto.h`` at build time, so that every function of the library the
layer is built against is covered, not the ones somebody remembered. For each ``PMPI_X`` that
no unit of the layer (``native/*.c``) defines itself:

* every call waits while a checkpoint holds the application (MPI is torn down then): a datatype
  query reaches no finalized MPI;
* a communicator argument is translated from the application's (virtual) handle to the real one;
* an object it makes (group, datatype, op, error handler, info, window, file, session, a
  communicator made otherwise than by Dup and Split) is recorded, and forgotten when it is freed:
  a checkpoint is refused while one is live, naming the function that made it;
* a blocking collective becomes the nonblocking one completed in the layer's loop, so that a
  rank inside it can take part in a checkpoint, and is counted for the cut;
* a nonblocking collective is counted and tracked; any other request it makes (persistent,
  one-sided, I/O, generalized) is recorded as one the layer cannot bring back.

Usage: ``python generate.py MPI_PROTO_H LAYER_SOURCES OUTPUT``, LAYER_SOURCES being the
directory of the layer's C units (every ``*.c`` in it is read) or one C file.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

HANDLES = {
    "Comm": ("a communicator", "MPI_COMM_NULL"),
    "Group": ("a group", "MPI_GROUP_NULL"),
    "Datatype": ("a derived datatype", "MPI_DATATYPE_NULL"),
    "Op": ("a user-defined reduction op", "MPI_OP_NULL"),
    "Errhandler": ("an error handler", "MPI_ERRHANDLER_NULL"),
    "Info": ("an info object", "MPI_INFO_NULL"),
    "Win": ("a one-sided window", "MPI_WIN_NULL"),
    "File": ("an MPI-IO file", "MPI_FILE_NULL"),
    "Session": ("an MPI session of the application's own", "MPI_SESSION_NULL"),
}
COLLECTIVES = ["Barrier", "Bcast", "Gather", "Gatherv", "Scatter", "Scatterv", "Allgather",
               "Allgatherv", "Alltoall", "Alltoallv", "Alltoallw", "Reduce", "Allreduce",
               "Reduce_scatter", "Reduce_scatter_block", "Scan", "Exscan",
               "Neighbor_allgather", "Neighbor_allgatherv", "Neighbor_alltoall",
               "Neighbor_alltoallv", "Neighbor_alltoallw"]
#: functions that need no MPI state, which may run while the layer has MPI torn down
UNGATED_NAMES = {"Get_version", "Get_library_version", "Get_processor_name", "Pcontrol"}
FREES = re.compile(r"_(free|close|disconnect)$|^Session_finalize$")


@dataclass
class Param:
    decl: str
    name: str
    type: str  # the declaration without the name


@dataclass
class Function:
    name: str  # without the MPI_ prefix
    params: list[Param]


def parse(header: str) -> list[Function]:
    text = re.sub(r"/\*.*?\*/", "", header, flags=re.S)
    out = []
    prototype = r"(?m)^int\s+PMPI_(\w+)\s*\(([^;{]*?)\)\s*(?:MPICH_\w+(?:\([^)]*\))?\s*)*;"
    for m in re.finditer(prototype, text):
        name, plist = m.group(1), " ".join(m.group(2).split())
        if "..." in plist:
            continue
        params = []
        if plist and plist != "void":
            for decl in plist.split(","):
                decl = decl.strip()
                pm = re.match(r"^(.*?)(\w+)((?:\[[^\]]*\])*)$", decl)
                if not pm:
                    raise ValueError(f"PMPI_{name}: cannot read parameter {decl!r}")
                params.append(Param(decl, pm.group(2), (pm.group(1) + pm.group(3)).strip()))
        out.append(Function(name, params))
    return out


def handwritten(source: str) -> set[str]:
    return set(re.findall(r"EXPORT int MPI_(\w+)\(", source))


def layer_sources(path: str) -> str:
    """The text of the layer's hand-written units: every ``*.c`` of a directory, or one file."""
    where = Path(path)
    files = sorted(where.glob("*.c")) if where.is_dir() else [where]
    if not files:
        raise SystemExit(f"generate.py: no C sources in {where}")
    return "\n".join(f.read_text() for f in files)


def out_handle(p: Param) -> str | None:
    """The handle kind ``p`` returns (``MPI_X *name``), if it is one."""
    m = re.fullmatch(r"MPI_(\w+) \*", p.type)
    if m and m.group(1) in HANDLES:
        return m.group(1)
    return None


def wrapper(f: Function) -> str | None:
    comms = [p.name for p in f.params if p.type == "MPI_Comm"]
    outs = [(p.name, out_handle(p)) for p in f.params if out_handle(p)]
    requests = [p.name for p in f.params if p.type == "MPI_Request *"]
    if f.name in UNGATED_NAMES:
        return None
    sig = f"EXPORT int MPI_{f.name}({', '.join(p.decl for p in f.params)})"
    base = f.name[:-2] if f.name.endswith("_c") else f.name
    suffix = "_c" if f.name.endswith("_c") else ""

    def call(fn: str, comm_expr: dict[str, str], extra: str = "") -> str:
        args = [comm_expr.get(p.name, p.name) for p in f.params] + ([extra] if extra else [])
        return f"PMPI_{fn}({', '.join(args)})"

    translated = {c: f"R({c})" for c in comms}
    shown = "MPI_" + f.name.removesuffix("_c")  # in messages: the name the user knows
    lines = [sig, "{", "    enter();", "    int rc;"]
    if base in COLLECTIVES and comms and not requests:
        c = comms[0]
        nonblocking = "I" + base[0].lower() + base[1:] + suffix
        lines += [
            f"    int ci = idx({c});",
            f"    if (ci < 0) {{ rc = {call(f.name, {})}; leave(); return rc; }}",
            "    coll_admit(ci);",
            "    MPI_Request req_;",
            f"    rc = {call(nonblocking, {c: 'C[ci].r'}, '&req_')};",
            "    if (rc) C[ci].completed++;",
            "    else rc = coll_wait(ci, req_);",
        ]
    elif f.name.startswith("I") and (f.name[1].upper() + f.name[2:]).removesuffix("_c") in \
            COLLECTIVES and comms and requests:
        c, r = comms[0], requests[0]
        lines += [
            f"    int ci = idx({c});",
            "    if (ci >= 0) coll_admit(ci);",
            f"    rc = {call(f.name, translated)};",
            f"    if (ci >= 0) {{ if (rc) C[ci].completed++; "
            f"else coll_track(ci, {r}, \"{shown}\"); }}",
        ]
    else:
        frees = bool(FREES.search(f.name))
        for name, kind in outs:
            lines.append(f"    MPI_{kind} before_{name} = *{name};")
        for r in requests:
            lines.append(f"    MPI_Request before_{r} = *{r};")
        lines.append(f"    rc = {call(f.name, translated)};")
        for name, kind in outs:
            what, null = HANDLES[kind]
            if frees:
                lines.append(f"    if (!rc && *{name} == {null} && is_object((long)before_{name})) "
                             f"unsupported_gone(\"{what}\", (long)before_{name});")
            else:
                lines.append(f"    if (!rc && *{name} != before_{name} && *{name} != {null} && "
                             f"is_object((long)*{name})) unsupported_made(\"{what}\", "
                             f"(long)*{name}, \"{shown}\");")
        for r in requests:
            lines.append(f"    if (!rc && *{r} != before_{r} && *{r} != MPI_REQUEST_NULL) "
                         f"{{ int k_ = treq_new(RQ_REFUSED, -1, *{r}); "
                         f"T[k_].made_by = \"{shown}\"; }}")
    lines += ["    leave();", "    return rc;", "}", ""]
    return "\n".join(lines)


def generate(header: str, source: str) -> str:
    mine = handwritten(source)
    parts = ["/* generated by snapc/crcp/generate.py from MPICH's mpi_proto.h: do not edit */", ""]
    for f in parse(header):
        if f.name in mine:
            continue
        w = wrapper(f)
        if w:
            parts.append(w)
    return "\n".join(parts)


def main(argv: list[str]) -> None:
    header_path, sources, output = argv
    with open(header_path) as h:
        text = generate(h.read(), layer_sources(sources))
    with open(output, "w") as o:
        o.write(text)


if __name__ == "__main__":
    main(sys.argv[1:])
