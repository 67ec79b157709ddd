"""Generate the part of the MPI layer that is the same for many functions (crcp_wrappers.inc).

Two descriptions of the MPI API are read at build time:

* the MPI standard's machine-readable API (``apis.json`` of the ``pympistandard`` package, a
  build requirement): every function with each parameter's kind (COMMUNICATOR, DATATYPE,
  REQUEST...), its direction (in, out, inout) and, for arrays, the parameter holding its length;
* MPICH's ``mpi_proto.h``, for the exact C signature of every function of the library the layer
  is built against (MPICH's own spelling of the types, its ``_c`` large-count variants, and the
  functions it has beyond the standard).

For every ``PMPI_X`` that no unit of the layer (``native/*.c``) defines itself, a wrapper is
written that:

* waits while a checkpoint holds the application (MPI is torn down then);
* translates every handle argument from the application's handle (one the layer made, which
  outlives MPI) to this incarnation's real one: communicators, datatypes (scalars and arrays),
  ops, windows, files, requests; groups and info objects, which the layer keeps itself, become a
  real object for the call (and a real one MPI returns becomes the layer's);
* records a datatype or op constructor, or a persistent request's init, with a copy of its
  arguments (arrays included, by the lengths the standard gives), so that the object can be made
  again after a rebuild; a datatype MPI returns for an existing one (Type_get_contents,
  File_get_view) is mapped back to the application's handle;
* turns a blocking collective into the nonblocking one completed in the layer's loop, counted
  for the cut; counts and tracks a nonblocking collective; runs a blocking collective I/O call
  without the layer's lock, counted on its file; tracks every other request it makes;
* raises an error as MPI does, on the error handler the application set on the call's
  communicator, window, file or session (the layer keeps error handlers; every real object
  returns errors to it), or on the default one when there is no such object.

A function whose semantics need more (communicators made or freed, groups, info, error handlers,
sessions, windows, files, completion, point to point...) must be written by hand in a unit: the
generator refuses to build if a function makes or frees such an object and no unit defines it.

It also writes, beside OUTPUT, ``crcp_interpose.inc``: MPICH's own PMPI functions that take a
communicator, redefined to give MPICH's calls of its own (ROMIO's) the layer's session world and
self for MPI_COMM_WORLD and MPI_COMM_SELF (mpich.c says why).

Usage: ``python generate.py MPI_PROTO_H LAYER_SOURCES OUTPUT [APIS_JSON]``, LAYER_SOURCES being
the directory of the layer's C units (every ``*.c`` in it is read) or one C file; APIS_JSON
defaults to the one ``pympistandard`` carries.
"""
from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

# the standard's handle kinds, as the layer names them in its helpers
HANDLE_KINDS = {
    "COMMUNICATOR": "MPI_Comm", "GROUP": "MPI_Group", "DATATYPE": "MPI_Datatype",
    "OPERATION": "MPI_Op", "ERRHANDLER": "MPI_Errhandler", "INFO": "MPI_Info",
    "WINDOW": "MPI_Win", "FILE": "MPI_File", "SESSION": "MPI_Session",
    "REQUEST": "MPI_Request", "MESSAGE": "MPI_Message",
}
#: kinds whose making and freeing only a hand-written unit may do
HANDWRITTEN_KINDS = {"COMMUNICATOR", "ERRHANDLER", "WINDOW", "FILE", "SESSION", "MESSAGE"}
COLLECTIVES = ["Barrier", "Bcast", "Gather", "Gatherv", "Scatter", "Scatterv", "Allgather",
               "Allgatherv", "Alltoall", "Alltoallv", "Alltoallw", "Reduce", "Allreduce",
               "Reduce_scatter", "Reduce_scatter_block", "Scan", "Exscan",
               "Neighbor_allgather", "Neighbor_allgatherv", "Neighbor_alltoall",
               "Neighbor_alltoallv", "Neighbor_alltoallw"]
#: MPI-IO calls that are collective over the file's group (blocking, or split, or nonblocking)
FILE_COLLECTIVES = re.compile(r"^File_(i?(read|write)(_at)?_all|(read|write)_ordered|"
                              r"(read|write)(_at)?_all_begin|(read|write)_ordered_begin|"
                              r"set_view|set_size|preallocate|sync|set_atomicity|seek_shared|"
                              r"set_info)(_c)?$")
FILE_SPLIT_ENDS = re.compile(r"^File_(read|write)(_at)?(_all|_ordered)_end$")
#: functions that need no MPI state, which may run while the layer has MPI torn down, and the
#: MPI_T interface (independent of MPI's initialization, no MPI handles): left to MPICH
UNWRAPPED = re.compile(r"^(Get_version|Get_library_version|Get_processor_name|Pcontrol|T_\w+|"
                       r"Wtime|Wtick|Aint_add|Aint_diff|Initialized|Finalized|"
                       r"\w+_(c2f|f2c|toint|fromint)|Status_(c2f|f2c|f2f08|f082f|c2f08|f082c))$")
#: arrays whose length the standard gives as '*': how many peers of the communicator
PEER_ARRAYS = {"sendtypes": "send", "recvtypes": "recv", "sendcounts": "send", "recvcounts": "recv",
               "sdispls": "send", "rdispls": "recv", "displs": "recv"}
#: deprecated MPI-1 functions MPICH still has and the standard's data no longer describes: the
#: function that replaced each, with the same parameters, or the kinds of their parameters
LEGACY_ALIASES = {"Type_hindexed": "Type_create_hindexed", "Type_hvector": "Type_create_hvector",
                  "Type_struct": "Type_create_struct", "Address": "Get_address",
                  "Errhandler_create": "Comm_create_errhandler",
                  "Errhandler_get": "Comm_get_errhandler", "Errhandler_set": "Comm_set_errhandler"}
LEGACY = {"Type_extent": [("datatype", "DATATYPE", "in")],
          "Type_lb": [("datatype", "DATATYPE", "in")],
          "Type_ub": [("datatype", "DATATYPE", "in")]}
#: datatype constructors whose result is a named predefined type (never freed by the program)
PREDEFINED_RESULT = re.compile(r"^Type_create_f90_\w+$")


@dataclass
class Param:
    decl: str
    name: str
    type: str          # the C declaration without the name
    kind: str = ""     # the standard's kind (COMMUNICATOR, ...)
    direction: str = "in"
    length: str | None = None

    @property
    def handle(self) -> str | None:
        return self.kind if self.kind in HANDLE_KINDS else None

    @property
    def is_array(self) -> bool:
        return "[" in self.type or (self.length is not None and self.type.endswith("*")
                                    and self.type.count("*") == 1 and "char" not in self.type
                                    and "void" not in self.type)

    @property
    def base_type(self) -> str:
        """The element type of an array or a pointer (without const)."""
        t = self.type.replace("const ", "").replace("[]", "").strip()
        return t[:-1].strip() if t.endswith("*") else t


@dataclass
class Function:
    name: str  # without the MPI_ prefix
    params: list[Param]
    std: dict | None = field(default=None, repr=False)

    @property
    def base(self) -> str:
        return self.name[:-2] if self.name.endswith("_c") else self.name

    @property
    def shown(self) -> str:
        return "MPI_" + self.base


def parse(header: str) -> list[Function]:
    text = re.sub(r"/\*.*?\*/", "", header, flags=re.S)
    out = []
    for m in re.finditer(r"(?m)^int\s+PMPI_(\w+)\s*\(([^;{]*?)\)\s*"
                         r"(?:MPICH_\w+(?:\([^)]*\))?\s*)*;",
                         text):
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


def default_apis() -> Path:
    from importlib.resources import files

    return Path(str(files("pympistandard") / "data" / "apis.json"))


def describe(functions: list[Function], apis: dict) -> None:
    """Give every parameter its kind, direction and length from the standard's description,
    matched to MPICH's C signature by position (the large-count-only parameters are in the
    ``_c`` variants alone)."""
    std = {v["name"][4:].lower(): v for v in apis.values() if v["name"].startswith("MPI_")}
    for f in functions:
        entry = std.get(LEGACY_ALIASES.get(f.base, f.base).lower())
        if entry is None:
            for p in f.params:
                for spec in LEGACY.get(f.base, []):
                    if spec[0] == p.name:
                        p.kind, p.direction = spec[1], spec[2]
            f.std = {"legacy": True} if f.base in LEGACY else None
            continue
        f.std = entry
        sparams = [p for p in entry["parameters"] if "c_parameter" not in p["suppress"]
                   and (f.name.endswith("_c") or not p["large_only"])]
        if len(sparams) != len(f.params):
            raise SystemExit(f"generate.py: PMPI_{f.name}: {len(f.params)} parameters in "
                             f"mpi_proto.h, {len(sparams)} in the standard's description")
        for p, s in zip(f.params, sparams, strict=True):
            p.kind, p.direction, p.length = s["kind"], s["param_direction"], s["length"]
            if p.handle and p.type.startswith(HANDLE_KINDS[p.handle]) is False and \
                    HANDLE_KINDS[p.handle] not in p.type:
                raise SystemExit(f"generate.py: PMPI_{f.name}({p.decl}): not a {p.kind}")


def handwritten(source: str) -> set[str]:
    return set(re.findall(r"EXPORT int MPI_(\w+)\(", source))


def layer_sources(path: str) -> str:
    """The text of the layer's hand-written units: every ``*.c`` of a directory, or one file."""
    where = Path(path)
    files = sorted(where.glob("*.c")) if where.is_dir() else [where]
    if not files:
        raise SystemExit(f"generate.py: no C sources in {where}")
    return "\n".join(f.read_text() for f in files)


def error_object(f: Function) -> tuple[str, str] | None:
    """The object an error of ``f`` is raised on: (kind, parameter), the first communicator,
    window, file or session it takes."""
    for p in f.params:
        if p.direction == "in" and not p.is_array and p.kind in ("COMMUNICATOR", "WINDOW", "FILE",
                                                                  "SESSION"):
            return p.kind, p.name
    return None


def is_blocking_collective(f: Function) -> bool:
    return f.base in COLLECTIVES


def is_nonblocking_collective(f: Function) -> bool:
    return f.base.startswith("I") and (f.base[1].upper() + f.base[2:]) in COLLECTIVES


def is_persistent_collective(f: Function) -> bool:
    return f.base.endswith("_init") and f.base[:-5] in COLLECTIVES


def is_persistent_p2p(f: Function) -> bool:
    return f.base in ("Send_init", "Bsend_init", "Ssend_init", "Rsend_init", "Recv_init",
                      "Psend_init", "Precv_init")


def length_expr(f: Function, p: Param, ci: str) -> str:
    """C expression of the number of elements of array ``p``."""
    if p.length in (None, "", "*"):
        which = PEER_ARRAYS.get(p.name)
        if which is None:
            raise SystemExit(f"generate.py: PMPI_{f.name}: length of {p.name} unknown")
        neighbor = "1" if "eighbor" in f.base else "0"
        return f"coll_peers({ci}, {neighbor}, {1 if which == 'send' else 0})"
    names = {q.name for q in f.params}
    if p.length in names:
        return p.length
    raise SystemExit(f"generate.py: PMPI_{f.name}: length {p.length!r} of {p.name} unknown")


class Wrapper:
    """The C text of one generated wrapper: declarations (every one initialized, before any
    check can jump to the end), checks and translations, the call, what follows a successful
    call, and what is undone in any case."""

    def __init__(self, f: Function):
        self.f = f
        self.decls: list[str] = []
        self.checks: list[str] = []
        self.post: list[str] = []
        self.cleanup: list[str] = []
        self.args = {p.name: p.name for p in f.params}
        self.obj = error_object(f)
        self.slot = "-1"  # the error object's slot in its table
        self.ci = "-1"    # the collective context of the call (a communicator's, a file's)
        self.out_type: Param | None = None
        self.out_getters: list[Param] = []
        self.out_op: Param | None = None
        self.out_request: Param | None = None

    def translate(self) -> None:
        f = self.f
        strict = int(self.obj is None)
        # the object the call is on first: the lengths of the other arrays may depend on it
        # (Alltoallw's datatypes, one per peer of the communicator)
        first = [p for p in f.params if self.obj is not None and p.name == self.obj[1]]
        for p in first + [p for p in f.params if p not in first]:
            k = p.handle
            if not k:
                continue
            ctype = HANDLE_KINDS[k]
            if p.is_array:
                if k == "DATATYPE" and p.direction == "out":
                    n = p.length
                    self.checks.append(f"    for (int i_ = 0; i_ < {n}; i_++) "
                                       f"{p.name}[i_] = MPI_DATATYPE_NULL;")
                    self.post.append(f"    for (int i_ = 0; i_ < {n}; i_++) "
                                     f"{p.name}[i_] = type_got({p.name}[i_]);")
                    continue
                if k != "DATATYPE" or p.direction != "in":
                    raise SystemExit(f"generate.py: PMPI_{f.name}: array {p.name} of {k} "
                                     f"({p.direction}) needs a hand-written wrapper")
                n = length_expr(f, p, self.ci)
                self.decls.append(f"    MPI_Datatype *r_{p.name} = NULL;")
                self.checks.append(f"    if ((rc = types_in({p.name}, {n}, &r_{p.name}))) "
                                   "goto out;")
                self.cleanup.append(f"    free(r_{p.name});")
                self.args[p.name] = f"r_{p.name}"
                continue
            if p.direction == "in":
                is_obj = self.obj is not None and self.obj[1] == p.name
                if k == "COMMUNICATOR" and is_obj:
                    self.decls.append(f"    int ci_ = idx({p.name});")
                    self.checks.append("    if (ci_ < 0) { rc = MPI_ERR_COMM; goto out; }")
                    self.slot = self.ci = "ci_"
                    self.args[p.name] = "C[ci_].r"
                elif k == "COMMUNICATOR":
                    self.decls.append(f"    MPI_Comm r_{p.name} = MPI_COMM_NULL;")
                    self.checks.append(f"    if ((rc = comm_in({p.name}, &r_{p.name}))) goto out;")
                    self.args[p.name] = f"r_{p.name}"
                elif k == "WINDOW" and is_obj:
                    self.decls.append(f"    int wi_ = win_idx({p.name});")
                    self.checks.append("    if (wi_ < 0) { rc = MPI_ERR_WIN; goto out; }")
                    self.args[p.name] = "W[wi_].r"
                    self.slot, self.ci = "wi_", "W[wi_].ctx"
                elif k == "FILE" and is_obj:
                    self.decls.append(f"    int fi_ = file_idx({p.name});")
                    self.checks.append("    if (fi_ < 0) { rc = MPI_ERR_FILE; goto out; }")
                    self.args[p.name] = "F[fi_].r"
                    self.slot, self.ci = "fi_", "F[fi_].ctx"
                elif k == "DATATYPE":
                    self.decls.append(f"    MPI_Datatype r_{p.name} = MPI_DATATYPE_NULL;")
                    self.checks.append(f"    if ((rc = type_in({p.name}, &r_{p.name}, "
                                       f"{strict}))) goto out;")
                    self.args[p.name] = f"r_{p.name}"
                elif k == "OPERATION":
                    self.decls.append(f"    MPI_Op r_{p.name} = MPI_OP_NULL;")
                    self.checks.append(f"    if ((rc = op_in({p.name}, &r_{p.name}, "
                                       f"{strict}))) goto out;")
                    self.args[p.name] = f"r_{p.name}"
                elif k == "INFO":
                    self.decls.append(f"    MPI_Info r_{p.name} = MPI_INFO_NULL;")
                    self.checks.append(f"    if ((rc = info_in({p.name}, &r_{p.name}))) goto out;")
                    self.cleanup.append(f"    info_done(&r_{p.name});")
                    self.args[p.name] = f"r_{p.name}"
                elif k == "GROUP":
                    self.decls.append(f"    MPI_Group r_{p.name} = MPI_GROUP_NULL;")
                    self.checks.append(f"    if ((rc = group_in({p.name}, &r_{p.name}))) goto out;")
                    self.cleanup.append(f"    group_done(&r_{p.name});")
                    self.args[p.name] = f"r_{p.name}"
                elif k == "REQUEST":
                    self.decls.append(f"    MPI_Request r_{p.name} = MPI_REQUEST_NULL;")
                    self.checks.append(f"    if ((rc = request_in({p.name}, &r_{p.name}))) "
                                       "goto out;")
                    self.args[p.name] = f"r_{p.name}"
                else:
                    raise SystemExit(f"generate.py: PMPI_{f.name}: {k} {p.name} needs a "
                                     "hand-written wrapper")
                continue
            # out or inout
            if k in HANDWRITTEN_KINDS or p.direction == "inout":
                raise SystemExit(f"generate.py: PMPI_{f.name} makes or changes {k} "
                                 f"{p.name}: no unit of the layer defines MPI_{f.name}")
            if k in ("INFO", "GROUP"):
                null = "MPI_INFO_NULL" if k == "INFO" else "MPI_GROUP_NULL"
                got = "info_got" if k == "INFO" else "group_got"
                self.decls.append(f"    {ctype} r_{p.name} = {null};")
                self.post.append(f"    *{p.name} = {got}(r_{p.name});")
                self.args[p.name] = f"&r_{p.name}"
            elif k == "DATATYPE":
                self.decls.append(f"    MPI_Datatype r_{p.name} = MPI_DATATYPE_NULL;")
                self.args[p.name] = f"&r_{p.name}"
                if is_type_constructor(f):
                    self.out_type = p
                else:
                    self.out_getters.append(p)
                    self.post.append(f"    *{p.name} = type_got(r_{p.name});")
            elif k == "OPERATION":
                self.decls.append(f"    MPI_Op r_{p.name} = MPI_OP_NULL;")
                self.args[p.name] = f"&r_{p.name}"
                self.out_op = p
            elif k == "REQUEST":
                self.decls.append(f"    MPI_Request r_{p.name} = MPI_REQUEST_NULL;")
                self.args[p.name] = f"&r_{p.name}"
                self.out_request = p
            else:
                raise SystemExit(f"generate.py: PMPI_{f.name}: {k} {p.name} "
                                 f"({p.direction}) needs a hand-written wrapper")

    def call(self, fn: str | None = None, extra: str = "") -> str:
        args = [self.args[p.name] for p in self.f.params] + ([extra] if extra else [])
        return f"PMPI_{fn or self.f.name}({', '.join(args)})"


def is_type_constructor(f: Function) -> bool:
    return f.base.startswith("Type_") and not f.base.startswith("Type_get_") and \
        f.base not in ("Type_match_size",)


def constructor(w: Wrapper, out: Param) -> tuple[list[str], str]:
    """The record of a datatype or op constructor, or of a persistent request's init: a struct
    with a copy of every argument (arrays by the lengths the standard gives; the objects they
    name held, so that they can be made again even if the program frees them), the statements
    that fill it, and the functions that replay it in a new incarnation and drop it."""
    f = w.f
    sname = f"rec_{f.name}"
    members, fill, lens = [], [], []
    rargs, rpre, rpost, drop = [], [], [], []
    for p in f.params:
        if p.name == out.name:
            rargs.append("&made_")
            continue
        k = p.handle
        if p.is_array:
            et = p.base_type
            lens.append((p.name, length_expr(f, p, w.ci)))
            members.append(f"    {et} *{p.name}; int n_{p.name};")
            fill.append(f"rec_->n_{p.name} = {p.name} ? (int)(LEN_{p.name}) : 0;")
            fill.append(f"rec_->{p.name} = {p.name} ? "
                        f"rec_copy({p.name}, rec_->n_{p.name} * sizeof *{p.name}) : NULL;")
            drop.append(f"    free(r->{p.name});")
            if k == "DATATYPE":
                fill.append(f"for (int i_ = 0; i_ < rec_->n_{p.name} && rec_->{p.name}; i_++) "
                            f"type_hold(rec_->{p.name}[i_], 1);")
                drop.insert(0, f"    for (int i_ = 0; i_ < r->n_{p.name} && r->{p.name}; i_++) "
                               f"type_hold(r->{p.name}[i_], -1);")
                rpre.append(f"    MPI_Datatype *t_{p.name} = NULL;")
                rpre.append(f"    if (r->{p.name} && (rc = types_in(r->{p.name}, r->n_{p.name}, "
                            f"&t_{p.name}))) return rc;")
                rpost.append(f"    free(t_{p.name});")
                rargs.append(f"r->{p.name} ? t_{p.name} : NULL")
            elif k:
                raise SystemExit(f"generate.py: PMPI_{f.name}: cannot record an array of {k}")
            else:
                rargs.append(f"r->{p.name}")
            continue
        t = p.type.replace("const ", "").strip()
        if k == "INFO":
            members.append(f"    MPI_Info {p.name};")
            fill.append(f"rec_->{p.name} = info_keep({p.name});")
            drop.append(f"    info_unkeep(r->{p.name});")
            rpre.append(f"    MPI_Info i_{p.name} = MPI_INFO_NULL;")
            rpre.append(f"    if ((rc = info_in(r->{p.name}, &i_{p.name}))) return rc;")
            rpost.append(f"    info_done(&i_{p.name});")
            rargs.append(f"i_{p.name}")
            continue
        if t in ("char *", "char*"):
            members.append(f"    char *{p.name};")
            fill.append(f"rec_->{p.name} = {p.name} ? strdup({p.name}) : NULL;")
            drop.append(f"    free(r->{p.name});")
        else:
            members.append(f"    {t} {p.name};")
            fill.append(f"rec_->{p.name} = ({t}){p.name};" if "const" in p.type
                        else f"rec_->{p.name} = {p.name};")
        if k == "DATATYPE":
            fill.append(f"type_hold({p.name}, 1);")
            drop.insert(0, f"    type_hold(r->{p.name}, -1);")
            rpre.append(f"    MPI_Datatype t_{p.name};")
            rpre.append(f"    if ((rc = type_in(r->{p.name}, &t_{p.name}, 0))) return rc;")
            rargs.append(f"t_{p.name}")
        elif k == "OPERATION":
            fill.append(f"op_hold({p.name}, 1);")
            drop.insert(0, f"    op_hold(r->{p.name}, -1);")
            rpre.append(f"    MPI_Op o_{p.name};")
            rpre.append(f"    if ((rc = op_in(r->{p.name}, &o_{p.name}, 0))) return rc;")
            rargs.append(f"o_{p.name}")
        elif k == "COMMUNICATOR":
            fill.append(f"comm_hold({p.name}, 1);")
            drop.insert(0, f"    comm_hold(r->{p.name}, -1);")
            rpre.append(f"    int c_{p.name} = idx_any(r->{p.name});")
            rpre.append(f"    if (c_{p.name} < 0 || C[c_{p.name}].r == MPI_COMM_NULL) "
                        "return MPI_ERR_COMM;")
            rargs.append(f"C[c_{p.name}].r")
        elif k:
            raise SystemExit(f"generate.py: PMPI_{f.name}: cannot record a {k} argument")
        else:
            rargs.append(f"r->{p.name}")
    otype = HANDLE_KINDS[out.kind]
    struct = f"struct {sname} {{\n    struct rec hdr;\n" + "\n".join(members) + "\n};"
    replay = "\n".join([
        f"static int replay_{f.name}(struct rec *h, void *made)", "{",
        f"    struct {sname} *r = (struct {sname} *)h;", "    int rc = MPI_SUCCESS;",
        *rpre, f"    {otype} made_ = {NULLS[otype]};",
        f"    rc = PMPI_{f.name}({', '.join(rargs)});", *rpost,
        f"    if (!rc) *({otype} *)made = made_;", "    return rc;", "}",
        f"static void drop_{f.name}(struct rec *h)", "{",
        f"    struct {sname} *r = (struct {sname} *)h;", *drop, "    (void)r;", "}", ""])
    filled = [f"#define LEN_{n} ({e})" for n, e in lens]
    filled.append(f"struct {sname} *rec_ = rec_new(sizeof *rec_, replay_{f.name}, "
                  f"drop_{f.name}, \"{f.shown}\");")
    filled += fill
    filled += [f"#undef LEN_{n}" for n, _ in lens]
    return filled, struct + "\n" + replay


NULLS = {"MPI_Datatype": "MPI_DATATYPE_NULL", "MPI_Op": "MPI_OP_NULL",
         "MPI_Request": "MPI_REQUEST_NULL"}


def wrapper(f: Function) -> tuple[str, str] | None:
    """The wrapper of ``f`` and what it needs before it (a record's struct and replay)."""
    if UNWRAPPED.match(f.name):
        return None
    if f.std is None:
        raise SystemExit(f"generate.py: PMPI_{f.name} is not in the standard's description: it "
                         "needs a hand-written wrapper, or a line in LEGACY")
    w = Wrapper(f)
    w.translate()
    sig = f"EXPORT int MPI_{f.name}({', '.join(p.decl for p in f.params)})"
    shown = f.shown
    lines = [sig, "{", "    enter();", "    int rc = MPI_SUCCESS;"]
    lines += w.decls + w.checks
    before = ""
    ci = w.ci
    obj_kind = {"COMMUNICATOR": "OBJ_COMM", "WINDOW": "OBJ_WIN", "FILE": "OBJ_FILE",
                "SESSION": "OBJ_SESSION"}
    raise_on = f"{obj_kind[w.obj[0]]}, {w.slot}" if w.obj else "OBJ_NONE, -1"
    suffix = "_c" if f.name.endswith("_c") else ""
    fcoll = FILE_COLLECTIVES.match(f.name) and ci != "-1"
    if is_blocking_collective(f) and ci == "ci_":
        nb = "I" + f.base[0].lower() + f.base[1:] + suffix
        lines += [
            "    coll_admit(ci_);",
            "    MPI_Request req_;",
            f"    rc = {w.call(nb, '&req_')};",
            "    if (rc) C[ci_].completed++;",
            "    else rc = coll_wait(ci_, req_);",
        ]
    elif is_nonblocking_collective(f) and ci == "ci_" and w.out_request is not None:
        r = w.out_request.name
        lines += [
            "    coll_admit(ci_);",
            f"    rc = {w.call()};",
            "    if (rc) C[ci_].completed++;",
            f"    else *{r} = request_made(RQ_COLL, ci_, r_{r}, NULL, \"{shown}\");",
        ]
    elif w.out_request is not None and (is_persistent_collective(f) or is_persistent_p2p(f)):
        r = w.out_request.name
        fill, before = constructor(w, w.out_request)
        coll = is_persistent_collective(f)
        if coll:
            lines.append("    coll_admit(ci_);")
        lines.append(f"    rc = {w.call()};")
        if coll:
            lines.append("    C[ci_].completed++;")
        kind = "RQ_PCOLL" if coll else "RQ_PART" if f.base[0] == "P" else "RQ_PERSIST"
        lines += ["    if (!rc) {", *["        " + x for x in fill],
                  f"        *{r} = request_made({kind}, {ci}, r_{r}, &rec_->hdr, \"{shown}\");"]
        if f.base in ("Send_init", "Bsend_init", "Ssend_init", "Rsend_init"):
            lines.append(f"        request_p2p(*{r}, 0, dest, tag, (void *)buf, count, datatype);")
        elif f.base == "Recv_init":
            lines.append(f"        request_p2p(*{r}, 1, source, tag, buf, count, datatype);")
        lines.append("    }")
    elif w.out_request is not None:
        r = w.out_request.name
        if fcoll:
            lines += [f"    coll_admit({ci});", f"    rc = {w.call()};",
                      f"    if (rc) C[{ci}].completed++;",
                      f"    else *{r} = request_made(RQ_COLL, {ci}, r_{r}, NULL, \"{shown}\");"]
        else:
            kind = "RQ_RMA" if f.base.startswith("R") else "RQ_IO" if f.base.startswith("File_") \
                else "RQ_OTHER"
            lines += [f"    rc = {w.call()};",
                      f"    if (!rc) *{r} = request_made({kind}, {ci}, r_{r}, NULL, \"{shown}\");"]
    elif fcoll:
        # collective over the file's group: counted on its context, run without the lock (the
        # file may be closed meanwhile by no one else: only this call's thread uses it)
        lines += [f"    int cc_ = {ci};", "    coll_admit(cc_);",
                  "    MPI_File rf_ = F[fi_].r;"]
        args = dict(w.args)
        w.args[f.params[0].name] = "rf_"
        lines.append(f"    UNGATED(rc = {w.call()});")
        w.args = args
        lines.append("    fi_ = file_idx(" + f.params[0].name + ");")
        if f.base.endswith("_begin"):
            lines.append("    if (rc) C[cc_].completed++; else if (fi_ >= 0) F[fi_].split = 1;")
        else:
            lines.append("    C[cc_].completed++;")
    elif FILE_SPLIT_ENDS.match(f.name) and w.obj and w.obj[0] == "FILE":
        lines += ["    MPI_File rf_ = F[fi_].r;"]
        args = dict(w.args)
        w.args[f.params[0].name] = "rf_"
        lines.append(f"    UNGATED(rc = {w.call()});")
        w.args = args
        lines += [f"    fi_ = file_idx({f.params[0].name});",
                  "    if (fi_ >= 0 && F[fi_].split) "
                  "{ F[fi_].split = 0; C[F[fi_].ctx].completed++; }"]
    elif w.out_type is not None:
        o = w.out_type.name
        fill, before = constructor(w, w.out_type)
        pre = "TYPE_PREDEFINED" if PREDEFINED_RESULT.match(f.name) else "0"
        lines += [f"    rc = {w.call()};", "    if (!rc) {", *["        " + x for x in fill],
                  f"        *{o} = type_made(r_{o}, &rec_->hdr, {pre});", "    }"]
        if f.base == "Type_dup":  # the attributes, by their copy callbacks
            old = f.params[0].name
            lines.append(f"    if (!rc && (rc = attrs_copy(A_TYPE, {old}, *{o}))) "
                         f"MPI_Type_free({o});")
    elif w.out_op is not None:
        o = w.out_op.name
        fill, before = constructor(w, w.out_op)
        lines += [f"    rc = {w.call()};", "    if (!rc) {", *["        " + x for x in fill],
                  f"        *{o} = op_made(r_{o}, &rec_->hdr);", "    }"]
    else:
        lines.append(f"    rc = {w.call()};")
    if w.post:
        lines += ["    if (!rc) {", *["    " + x for x in w.post], "    }"]
    lines += ["    goto out;", "out:", *w.cleanup,
              f"    if (rc) rc = raise_error({raise_on}, rc, \"{shown}\");",
              "    leave();", "    return rc;", "}", ""]
    return before, "\n".join(lines)


def interposer(f: Function) -> str | None:
    """MPICH's own call of PMPI_X with MPI_COMM_WORLD or MPI_COMM_SELF (ROMIO's, under the
    layer's session, where those are not MPICH's), given the session's world and self."""
    comms = [p.name for p in f.params if p.kind == "COMMUNICATOR" and p.direction == "in"
             and not p.is_array]
    if not comms or UNWRAPPED.match(f.name):
        return None
    args = ", ".join(f"mpich_comm({p.name})" if p.name in comms else p.name for p in f.params)
    return "\n".join([f"EXPORT int PMPI_{f.name}({', '.join(p.decl for p in f.params)})", "{",
                      f"    static __typeof__(&PMPI_{f.name}) next_;",
                      f"    NEXT(next_, \"PMPI_{f.name}\");",
                      f"    return next_({args});", "}", ""])


def generate_interposers(header: str, apis: dict) -> str:
    functions = parse(header)
    describe(functions, apis)
    parts = ["/* generated by snapc/crcp/generate.py: MPICH's own calls that take a communicator "
             "(mpich.c): do not edit */", ""]
    for f in functions:
        text = interposer(f)
        if text:
            parts.append(text)
    return "\n".join(parts)


def generate(header: str, source: str, apis: dict) -> str:
    mine = handwritten(source)
    functions = parse(header)
    describe(functions, apis)
    parts = ["/* generated by snapc/crcp/generate.py from the MPI standard's apis.json "
             "(pympistandard) and MPICH's mpi_proto.h: do not edit */", ""]
    for f in functions:
        if f.name in mine:
            continue
        w = wrapper(f)
        if w:
            before, text = w
            if before:
                parts.append(before)
            parts.append(text)
    return "\n".join(parts)


def main(argv: list[str]) -> None:
    header_path, sources, output = argv[:3]
    apis_path = Path(argv[3]) if len(argv) > 3 else default_apis()
    apis = json.loads(apis_path.read_text())
    with open(header_path) as h:
        header = h.read()
    Path(output).write_text(generate(header, layer_sources(sources), apis))
    Path(output).with_name("crcp_interpose.inc").write_text(generate_interposers(header, apis))


if __name__ == "__main__":
    main(sys.argv[1:])
