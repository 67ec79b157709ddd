"""MCA parameters: precedence, sources, aggregate sets, the per-user file, errors, child_env, and
``pycrs info`` as a user runs it. Real files in tmp dirs; HOME points at a tmp dir so the real
per-user file is never read."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from crs import params
from crs.params import AMCA_DIR, ParamError, Params

PY = sys.executable
PYCRS = str(Path(PY).parent / "pycrs")


pytestmark = pytest.mark.usefixtures("private_home")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# -- precedence --------------------------------------------------------------------------------
@pytest.fixture
def ladder(tmp_path: Path) -> tuple[Params, dict[str, tuple[str, str]]]:
    """t1..t5 set at every level from the command line down to the per-user file, each one level
    fewer than the one before, so each is won by a different source."""
    sets = tmp_path / "sets"
    set1 = write(sets / "set1", "t1 = set1\nt2 = set1\nt3 = set1  # comment\n")
    set2 = write(sets / "set2", "# a set\nt1 = set2\nt2 = set2\nt3 = set2\nt4 = set2\n")
    user = write(tmp_path / "user.conf", "t1=file\nt2=file\nt3=file\nt4=file\nt5=file\n")
    env = {"OMPI_MCA_t1": "env", "OMPI_MCA_t2": "env", "OMPI_MCA_mca_base_param_files": str(user)}
    prm = Params(cli=[("t1", "cli"), ("mca_base_param_file_path", str(sets))],
                 amca=["set1", "set2"], env=env)
    expected = {
        "t1": ("cli", "command line"),
        "t2": ("env", "environment OMPI_MCA_t2"),
        "t3": ("set1", f"aggregate set set1 ({set1})"),
        "t4": ("set2", f"aggregate set set2 ({set2})"),
        "t5": ("file", f"file {user}"),
        "crs_base_fsync": ("1", "default"),
    }
    return prm, expected


@pytest.mark.parametrize("name", ["t1", "t2", "t3", "t4", "t5", "crs_base_fsync"])
def test_precedence_and_source(ladder: tuple[Params, dict[str, tuple[str, str]]],
                               name: str) -> None:
    prm, expected = ladder
    pv = prm.lookup(name)
    assert (pv.value, pv.source) == expected[name]
    assert prm.get(name) == expected[name][0]


def test_all_values_reports_every_level(ladder: tuple[Params, dict[str, tuple[str, str]]]) -> None:
    prm, expected = ladder
    got = {pv.name: (pv.value, pv.source) for pv in prm.all_values()}
    for name, want in expected.items():
        assert got[name] == want
    assert {s.name for s in params.registered()} <= set(got)


def test_am_colon_list_equals_repeated_am(tmp_path: Path) -> None:
    write(tmp_path / "a", "x = a\n")
    write(tmp_path / "b", "x = b\ny = b\n")
    path = [("mca_base_param_file_path", str(tmp_path))]
    for prm in (Params(cli=path, amca=["a:b"], env={}), Params(cli=path, amca=["a", "b"], env={})):
        assert prm.get("x") == "a" and prm.get("y") == "b"
    assert Params(cli=path, amca=["b", "a"], env={}).get("x") == "b"


def test_am_from_environment_prefix(tmp_path: Path) -> None:
    write(tmp_path / "envset", "crs = fromset\n")
    env = {"OMPI_MCA_mca_base_param_file_prefix": "envset",
           "OMPI_MCA_mca_base_param_file_path": str(tmp_path)}
    assert Params(env=env).lookup("crs").source == f"aggregate set envset ({tmp_path / 'envset'})"


def test_am_set_found_by_path_and_in_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    byname = write(tmp_path / "elsewhere" / "mine.conf", "crs = bypath\n")
    assert Params(amca=[str(byname)], env={}).get("crs") == "bypath"
    write(tmp_path / "cwdset", "crs = incwd\n")
    monkeypatch.chdir(tmp_path)
    assert Params(amca=["cwdset"], env={}).get("crs") == "incwd"


def test_shipped_ft_enable_cr() -> None:
    prm = Params(amca=["ft-enable-cr"], env={})
    assert prm.get_bool("ft_cr_enabled") is True
    assert prm.lookup("ft_cr_enabled").source == (
        f"aggregate set ft-enable-cr ({AMCA_DIR / 'ft-enable-cr'})")
    assert Params(env={}).get_bool("ft_cr_enabled") is False
    # a command-line value still beats the set
    assert Params(cli=[("ft_cr_enabled", "0")], amca=["ft-enable-cr"], env={}).get_bool(
        "ft_cr_enabled") is False


def test_per_user_file_default_location(private_home: Path) -> None:
    conf = write(private_home / ".pycrs" / "mca-params.conf", "crs_base_snapshot_dir = ~/snaps\n")
    prm = Params(env={})
    assert prm.lookup("crs_base_snapshot_dir").source == f"file {conf}"
    assert prm.get_path("crs_base_snapshot_dir") == private_home / "snaps"


def test_several_per_user_files_first_wins(tmp_path: Path) -> None:
    a = write(tmp_path / "a.conf", "crs = a\n")
    b = write(tmp_path / "b.conf", "crs = b\ncrs_self_prefix = b\n")
    prm = Params(env={"OMPI_MCA_mca_base_param_files": f"{a}:{tmp_path / 'absent.conf'}:{b}"})
    assert prm.lookup("crs").source == f"file {a}"
    assert prm.lookup("crs_self_prefix").source == f"file {b}"


@pytest.mark.parametrize("text,value", [
    ("1", True), ("true", True), ("Yes", True), ("ON", True), ("enabled", True),
    ("0", False), ("false", False), ("no", False), ("Off", False), ("disabled", False), ("", False),
])
def test_boolean_spellings(text: str, value: bool) -> None:
    assert Params(cli=[("crs_base_fsync", text)], env={}).get_bool("crs_base_fsync") is value


def test_unknown_name_without_value_is_keyerror() -> None:
    with pytest.raises(KeyError):
        Params(env={}).lookup("no_such_parameter")


# -- errors ------------------------------------------------------------------------------------
def test_missing_am_set_names_it(tmp_path: Path) -> None:
    prm = Params(cli=[("mca_base_param_file_path", str(tmp_path))], amca=["no-such-set"], env={})
    with pytest.raises(ParamError, match=r"aggregate parameter set 'no-such-set' not found") as ei:
        prm.get("crs")
    assert str(tmp_path) in str(ei.value)


@pytest.mark.parametrize("where", ["set", "file"])
def test_malformed_line_names_file_and_line(tmp_path: Path, where: str) -> None:
    bad = write(tmp_path / "bad", "crs = self\n\n# fine\njust some words\n")
    if where == "set":
        prm = Params(amca=[str(bad)], env={})
    else:
        prm = Params(env={"OMPI_MCA_mca_base_param_files": str(bad)})
    with pytest.raises(ParamError, match=re.escape(f"{bad}:4:") + r".*'just some words'"):
        prm.get("crs")


@pytest.mark.parametrize("where", ["set", "file"])
def test_binary_file_is_a_param_error(tmp_path: Path, where: str) -> None:
    bad = tmp_path / "binary"
    bad.write_bytes(b"crs = self\n\xff\xfe\x00garbage\x9c\n")
    if where == "set":
        prm = Params(amca=[str(bad)], env={})
    else:
        prm = Params(env={"OMPI_MCA_mca_base_param_files": str(bad)})
    with pytest.raises(ParamError, match=re.escape(str(bad))):
        prm.get("crs")


@pytest.mark.parametrize("level", ["cli", "env", "set", "file"])
def test_bad_boolean_names_parameter_and_source(tmp_path: Path, level: str) -> None:
    conf = write(tmp_path / "conf", "crs_base_fsync = maybe\n")
    prm = {
        "cli": lambda: Params(cli=[("crs_base_fsync", "maybe")], env={}),
        "env": lambda: Params(env={"OMPI_MCA_crs_base_fsync": "maybe"}),
        "set": lambda: Params(amca=[str(conf)], env={}),
        "file": lambda: Params(env={"OMPI_MCA_mca_base_param_files": str(conf)}),
    }[level]()
    source = {"cli": "command line", "env": "environment OMPI_MCA_crs_base_fsync",
              "set": f"aggregate set {conf} ({conf})", "file": f"file {conf}"}[level]
    with pytest.raises(ParamError) as ei:
        prm.get_bool("crs_base_fsync")
    msg = str(ei.value)
    assert "crs_base_fsync" in msg and "'maybe'" in msg and "boolean" in msg
    assert f"(from {source})" in msg


def test_bad_integer_names_parameter_and_source() -> None:
    prm = Params(env={"OMPI_MCA_some_count": "12x"})
    with pytest.raises(ParamError,
                       match=r"some_count.*'12x'.*integer.*environment OMPI_MCA_some_count"):
        prm.get_int("some_count")
    assert Params(env={"OMPI_MCA_some_count": " 12 "}).get_int("some_count") == 12


def test_validate_rejects_any_bad_typed_value() -> None:
    Params(env={}).validate()
    with pytest.raises(ParamError, match="ft_cr_enabled.*'maybe'"):
        Params(cli=[("ft_cr_enabled", "maybe")], env={}).validate()
    with pytest.raises(ParamError, match="'nope' not found"):
        Params(amca=["nope"], env={}).validate()


# -- child_env ---------------------------------------------------------------------------------
def test_child_env_is_the_command_line_with_sets_expanded() -> None:
    prm = Params(cli=[("crs", "self"), ("crs_base_fsync", "0")], amca=["ft-enable-cr"],
                 env={"OMPI_MCA_crs_self_prefix": "env_only"})
    assert prm.child_env() == {
        "OMPI_MCA_crs": "self",
        "OMPI_MCA_crs_base_fsync": "0",
        # the set's values, never its name: Open MPI's ranks would look for the set themselves
        "OMPI_MCA_ft_cr_enabled": "1",
    }
    assert Params(env={"OMPI_MCA_crs": "self"}).child_env() == {}
    # a set named in the environment is expanded too, but what the environment sets stays its own
    inherited = Params(env={"OMPI_MCA_mca_base_param_file_prefix": "ft-enable-cr",
                            "OMPI_MCA_ft_cr_enabled": "0"})
    assert inherited.child_env() == {}


RESOLVE = ("import json; from crs.params import Params; "
           "print(json.dumps({n: Params().get(n) for n in "
           "['crs', 'crs_base_fsync', 'ft_cr_enabled', 'crs_base_snapshot_dir']}))")


def test_child_resolves_what_its_launcher_did(tmp_path: Path, private_home: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A child started elsewhere (opal-restart starts it in the snapshot's CWD) with the launcher's
    environment plus child_env() resolves the same values, even for sets and paths given
    relative to the launcher's directory."""
    launcher_dir, child_dir = tmp_path / "launcher", tmp_path / "child"
    write(launcher_dir / "myset", "crs_base_fsync = 0\n")
    child_dir.mkdir()
    monkeypatch.chdir(launcher_dir)
    prm = Params(cli=[("crs", "self"), ("crs_base_snapshot_dir", "snaps")],
                 amca=["ft-enable-cr", "myset"], env={})
    want = {n: prm.get(n) for n in ["crs", "crs_base_fsync", "ft_cr_enabled"]}
    want["crs_base_snapshot_dir"] = str(launcher_dir / "snaps")
    assert prm.get_path("crs_base_snapshot_dir").absolute() == launcher_dir / "snaps"
    env = {"PATH": os.environ["PATH"], "HOME": str(private_home), **prm.child_env()}
    res = subprocess.run([PY, "-c", RESOLVE], cwd=child_dir, env=env, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    import json

    assert json.loads(res.stdout) == want


# -- pycrs info --------------------------------------------------------------------------------
@pytest.mark.parametrize("dashes", [[], ["--"]], ids=["plain", "dashes"])
def test_pycrs_run_gives_the_program_its_own_options(dashes: list[str],
                                                     private_home: Path) -> None:
    """Everything after pycrs run's own options is the program's, its options too (even ones
    named like pycrs's); a ``--`` before the program is allowed."""
    code = "import os, sys; print(os.environ['OMPI_MCA_crs'], sys.argv[1:])"
    res = subprocess.run([PYCRS, "run", "--mca", "crs", "self", *dashes, PY, "-c", code, "-x",
                          "--mca", "a", "b", "--", "-am"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "self ['-x', '--mca', 'a', 'b', '--', '-am']\n"


def _info(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYCRS, "info", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_pycrs_info_lists_components_and_sources(tmp_path: Path, private_home: Path) -> None:
    user = write(tmp_path / "user.conf", "crs_base_snapshot_dir = /from/file\ncrs = file\n")
    env = {**os.environ, "HOME": str(private_home), "OMPI_MCA_crs_base_fsync": "0",
           "OMPI_MCA_crs": "env", "OMPI_MCA_mca_base_param_files": str(user)}
    res = _info(["--mca", "crs", "self", "-am", "ft-enable-cr", "--mca", "my_extra", "42"], env)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    comps = dict(re.findall(r"^  (\w+)\s+default priority (\S+);", res.stdout, re.M))
    assert {"self": "20", "blcr": "10", "mtcp": "15"}.items() <= comps.items()
    for name in ("blcr", "mtcp", "self"):  # each says whether it can serve here, and why not
        line = next(ln for ln in res.stdout.splitlines() if ln.startswith(f"  {name} "))
        assert "here: " in line and len(line.split("here: ", 1)[1]) > 10
    shown = {m[0]: (m[1], m[2]) for m in
             re.findall(r"^  (\S+) = '(.*)'  \((.*)\)(?:  \[not a pycrs parameter\])?$",
                        res.stdout, re.M)}
    assert shown["crs"] == ("self", "command line")
    assert shown["crs_base_fsync"] == ("0", "environment OMPI_MCA_crs_base_fsync")
    assert shown["ft_cr_enabled"] == (
        "1", f"aggregate set ft-enable-cr ({AMCA_DIR / 'ft-enable-cr'})")
    assert shown["crs_base_snapshot_dir"] == ("/from/file", f"file {user}")
    assert shown["crs_self_prefix"] == ("opal_crs_self_user", "default")
    assert shown["my_extra"] == ("42", "command line")
    assert "my_extra = '42'  (command line)  [not a pycrs parameter]" in res.stdout
    registered = {s.name for s in params.registered()}
    assert registered <= set(shown)


@pytest.mark.parametrize("args,needle", [
    (["-am", "no-such-set"], "'no-such-set' not found"),
    (["--mca", "crs_base_fsync", "maybe"], "crs_base_fsync: 'maybe' is not a valid boolean "
                                           "(from command line)"),
])
def test_pycrs_info_bad_parameters(private_home: Path, args: list[str], needle: str) -> None:
    res = _info(args, {**os.environ, "HOME": str(private_home)})
    assert res.returncode != 0
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("pycrs: ")
    assert needle in res.stderr
    assert res.stdout == ""
