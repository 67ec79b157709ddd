"""``python -m tests.cluster cleanup``: remove what crashed test runs left of their emulated
clusters (every process in their namespaces, which takes the namespaces, veths and bridges
along). Clusters whose test run is alive are left alone. ``list`` shows the registry."""
from __future__ import annotations

import json
import sys

from .nodes import REGISTRY, cleanup_leftovers


def main(argv: list[str]) -> int:
    what = argv[0] if argv else "cleanup"
    if what == "cleanup":
        for line in cleanup_leftovers():
            print(line)
        return 0
    if what == "list":
        for path in sorted(REGISTRY.glob("*.json")) if REGISTRY.is_dir() else []:
            entry = json.loads(path.read_text())
            print(path.stem, "owner", entry.get("owner"), entry.get("root"))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
