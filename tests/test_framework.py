"""The CRS framework: discovery through the ``pycrs.crs`` entry-point group, selection by priority
and by the ``crs`` parameter, clear errors, and a third-party component shipped as a real
distribution (a package plus ``*.dist-info``) on PYTHONPATH of real processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

from crs import framework
from crs.framework import ComponentError, component_for_snapshot, select
from crs.hookspecs import ENTRY_POINT_GROUP, Target
from crs.params import Params

PY = sys.executable
PYCRS = str(Path(PY).parent / "pycrs")
OUTSIDE = Target(os.getpid(), in_process=False)
SHIPPED = {"self", "blcr", "mtcp"}


def test_shipped_components_are_discovered_by_entry_point() -> None:
    declared = {ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    assert SHIPPED <= declared
    assert set(framework.component_names()) == declared


def test_offers_give_a_priority_or_a_reason() -> None:
    offers = {o.component: o for o in framework.offers(OUTSIDE, Params(env={}))}
    assert SHIPPED <= set(offers)
    assert offers["blcr"].priority == 10  # the one that saves a process from outside
    for name in SHIPPED - {"blcr"}:
        assert offers[name].priority is None and offers[name].reason


def test_outside_selects_blcr_and_inside_refuses_it() -> None:
    assert select(OUTSIDE, Params(env={})).name == "blcr"
    inside = Target(os.getpid(), in_process=True)
    offer = {o.component: o for o in framework.offers(inside, Params(env={}))}["blcr"]
    assert offer.priority is None and "from outside" in offer.reason


@pytest.mark.parametrize("crs", ["bogus", "self,bogus", "^bogus", "^mtcp,bogus"])
def test_unknown_component_named_with_installed_list(crs: str) -> None:
    with pytest.raises(ComponentError) as ei:
        select(OUTSIDE, Params(cli=[("crs", crs)], env={}))
    msg = str(ei.value)
    assert "unknown CRS component bogus" in msg
    assert f"(installed: {', '.join(framework.component_names())})" in msg


def test_unknown_component_from_environment_and_only() -> None:
    with pytest.raises(ComponentError, match="unknown CRS component nope"):
        select(OUTSIDE, Params(env={"OMPI_MCA_crs": "nope"}))
    with pytest.raises(ComponentError, match="unknown CRS component nope"):
        select(OUTSIDE, Params(cli=[("crs", "self")], env={}), only="nope")


@pytest.mark.parametrize("crs", ["self", "mtcp", "self,mtcp", "^blcr"])
def test_no_usable_component_gives_each_reason(crs: str) -> None:
    prm = Params(cli=[("crs", crs)], env={})
    with pytest.raises(ComponentError) as ei:
        select(OUTSIDE, prm)
    msg = str(ei.value)
    assert f"no CRS component can checkpoint process {os.getpid()}" in msg
    offers = {o.component: o for o in framework.offers(OUTSIDE, prm)}
    considered = framework.parse_selection(crs)
    for name, offer in offers.items():
        included = (considered[0] is None or name in considered[0]) and name not in considered[1]
        assert (f"{name}: {offer.reason}" in msg) == included


def test_everything_excluded() -> None:
    with pytest.raises(ComponentError, match="all excluded"):
        select(OUTSIDE, Params(cli=[("crs", "^" + ",".join(framework.component_names()))], env={}))


def test_component_for_snapshot() -> None:
    assert component_for_snapshot("self").name == "self"
    with pytest.raises(ComponentError,
                       match=r"needs CRS component 'gone'.*not installed.*installed: "):
        component_for_snapshot("gone")


# -- a third-party component, shipped as a distribution ----------------------------------------
TOY = '''
"""Two third-party CRS components: toy (priority 25) and low (priority 5)."""
from crs.hookspecs import Offer, hookimpl
from crs.states import State


class Toy:
    def __init__(self, name, priority):
        self.name = name
        self.default_priority = priority

    @hookimpl
    def crs_query(self, target, params):
        if not target.in_process:
            return Offer(self.name, None, f"{self.name} works only in process")
        return Offer(self.name, self.default_priority)

    @hookimpl
    def crs_checkpoint(self, target, snapshot, options):
        snapshot.create(f"{self.name}.img").write(f"saved by {self.name}".encode())
        return State.CONTINUE


class Grumpy:
    name = "grumpy"

    @hookimpl
    def crs_query(self, target, params):
        raise RuntimeError("grumpy cannot read /proc/self/grumpy")


toy = Toy("toy", 25)
low = Toy("low", 5)
renamed = Toy("internal-name", 1)  # its entry point calls it "renamed"
grumpy = Grumpy()
'''


def ship(site: Path, dist: str, module: str, source: str, entries: dict[str, str]) -> None:
    """Install a distribution by hand: the module and a dist-info with its entry points."""
    (site / f"{module}.py").write_text(source)
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entries.items())
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}")


@pytest.fixture(scope="module")
def toy_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("site")
    ship(site, "pycrs-toy", "pycrs_toy", TOY, {"toy": "pycrs_toy:toy", "low": "pycrs_toy:low",
                                                "renamed": "pycrs_toy:renamed",
                                                "grumpy": "pycrs_toy:grumpy"})
    return site


def env_with(site: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMPI_MCA_")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [env.get("PYTHONPATH")])])
    env.update(extra)
    return env


SELECT = textwrap.dedent('''
    import json, os, sys
    import crs
    from crs import framework
    from crs.hookspecs import Target
    from crs.params import Params
    crs.on_checkpoint(lambda: {})          # so that self can serve too (priority 20)
    me = Target(os.getpid(), in_process=True)
    out = {"names": framework.component_names()}
    for text in json.loads(sys.argv[1]):
        try:
            c = framework.select(me, Params(cli=[("crs", text)] if text else []))
            out[text] = [c.name, c.priority]
        except framework.ComponentError as exc:
            out[text] = str(exc)
    print(json.dumps(out))
''')
CHOICES = {
    "": ["toy", 25],              # highest priority wins
    "self": ["self", 20],
    "low": ["low", 5],            # selectable by name even with the lowest priority
    "low,self": ["self", 20],     # highest among those included
    "^toy": ["self", 20],
    "^toy,self": ["low", 5],
    "toy,low": ["toy", 25],
    "renamed": ["renamed", 1],    # known by its entry-point name
    "^toy,self,low": ["renamed", 1],
}


@pytest.fixture(scope="module")
def selections(toy_site: Path) -> dict[str, object]:
    cases = [*CHOICES, "bogus", "blcr", "grumpy"]
    res = subprocess.run([PY, "-c", SELECT, json.dumps(cases)], env=env_with(toy_site),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_third_party_discovered(selections: dict[str, object]) -> None:
    assert {"toy", "low", "renamed", "grumpy"} | SHIPPED <= set(selections["names"])  # type: ignore[arg-type]


@pytest.mark.parametrize("crs", list(CHOICES))
def test_selection_with_third_party(selections: dict[str, object], crs: str) -> None:
    assert selections[crs] == CHOICES[crs]


def test_third_party_errors_list_it(selections: dict[str, object]) -> None:
    assert "unknown CRS component bogus" in selections["bogus"]  # type: ignore[operator]
    assert "grumpy, low, mtcp, renamed, self, toy" in selections["bogus"]  # type: ignore[operator]
    # blcr works from outside a process only, and says so when asked to save one from inside
    assert "blcr: saves a process from outside" in selections["blcr"]  # type: ignore[operator]
    # a query that raises is that component's reason not to serve, not a crash
    assert ("grumpy: query failed: RuntimeError: grumpy cannot read /proc/self/grumpy"
            in selections["grumpy"])  # type: ignore[operator]


def test_pycrs_info_lists_third_party(toy_site: Path, tmp_path: Path) -> None:
    res = subprocess.run([PYCRS, "info"], env=env_with(toy_site, HOME=str(tmp_path)),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    lines = {ln.split()[0]: ln for ln in res.stdout.splitlines() if "default priority" in ln}
    assert "default priority 25; here: toy works only in process" in lines["toy"]
    assert "default priority 5;" in lines["low"]
    assert SHIPPED <= set(lines)


CHECKPOINT = textwrap.dedent('''
    import os, sys
    from pathlib import Path
    from crs import framework
    from crs.hookspecs import CheckpointOptions, Target
    from crs.params import Params
    from crs.snapshot import LocalSnapshot, SnapshotWriter, standard_meta
    me = Target(os.getpid(), in_process=True)
    c = framework.select(me, Params())
    final = Path(sys.argv[1])
    with SnapshotWriter(final) as w:
        standard_meta(w.meta, c.name, me.pid, w.final)
        state = c.call("crs_checkpoint", target=me, snapshot=w, options=CheckpointOptions())
        w.commit()
    snap = LocalSnapshot(final)
    snap.verify()
    print(state.value, snap.component, sorted(snap.files))
''')


def test_third_party_checkpoints_alone(toy_site: Path, tmp_path: Path) -> None:
    """The selected component's hook runs, and no other component's."""
    final = tmp_path / "opal_snapshot_1.ckpt"
    res = subprocess.run([PY, "-c", CHECKPOINT, str(final)],
                         env=env_with(toy_site, OMPI_MCA_crs="low"),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split("\n")[0] == "CONTINUE low ['low.img']"
    assert (final / "low.img").read_bytes() == b"saved by low"


BROKEN = "raise ImportError('pycrs_broken needs libfoo.so.3')\n"


def test_broken_third_party_does_not_break_the_tools(toy_site: Path, tmp_path: Path) -> None:
    """A third-party component that cannot be imported is listed with the reason; the others
    work, and asking for it names the problem in one line."""
    site = tmp_path / "site"
    site.mkdir()
    ship(site, "pycrs-broken", "pycrs_broken", BROKEN, {"broken": "pycrs_broken:component"})
    env = env_with(site, HOME=str(tmp_path))
    env["PYTHONPATH"] += os.pathsep + str(toy_site)
    res = subprocess.run([PYCRS, "info"], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("  broken "))
    assert "pycrs_broken needs libfoo.so.3" in line
    assert any(ln.startswith("  toy ") for ln in res.stdout.splitlines())

    res = subprocess.run([PY, "-c", SELECT, json.dumps(["broken", "toy"])], env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    assert "broken" in got["names"]
    assert got["toy"] == ["toy", 25]
    assert "broken:" in got["broken"] and "pycrs_broken needs libfoo.so.3" in got["broken"]
