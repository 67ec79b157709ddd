"""How the ``self`` component stores the application's state: pickle protocol 5.

The object the checkpoint callback returns is pickled with its large buffers (numpy arrays,
bytes-like objects) kept out of band: ``state.pickle`` holds the object graph, ``state.buffers``
the raw buffers, each page-aligned and written straight from the application's memory with no
intermediate copy. On restart each buffer is read straight into the memory the restored object
will own.
"""
from __future__ import annotations

import pickle
from typing import Any

from crs.snapshot import LocalSnapshot, SnapshotWriter

PICKLE_FILE = "state.pickle"
BUFFERS_FILE = "state.buffers"
BUFFERS_KEY = "Self Buffers"
_ALIGN = 4096


def save(snapshot: SnapshotWriter, state: Any) -> None:
    """Write ``state`` into the snapshot (files plus a buffer table in the metadata)."""
    buffers: list[pickle.PickleBuffer] = []
    try:
        graph = pickle.dumps(state, protocol=5, buffer_callback=buffers.append)
    except Exception as exc:  # noqa: BLE001 - pickling errors come in many types
        raise TypeError(f"the checkpoint callback returned state that cannot be saved: {exc}"
                        ) from exc
    snapshot.create(PICKLE_FILE).write(graph)
    data = snapshot.create(BUFFERS_FILE)
    table = []
    for pb in buffers:
        data.pad_to(_ALIGN)
        raw = pb.raw()
        table.append([data.size, raw.nbytes])
        data.write(raw)
    snapshot.meta.add(BUFFERS_KEY, table)


def load(snapshot: LocalSnapshot) -> Any:
    """Read the state back, verifying every byte against the recorded checksums."""
    table = snapshot.meta.get_json(BUFFERS_KEY, [])
    reader = snapshot.open(BUFFERS_FILE)
    buffers = []
    for offset, length in table:  # type: ignore[union-attr]
        reader.skip_to(offset)
        buffers.append(reader.read(length))
    reader.finish()
    graph = snapshot.open(PICKLE_FILE)
    text = graph.read(graph.size)
    graph.finish()
    return pickle.loads(text, buffers=buffers)
