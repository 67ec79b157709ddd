"""The application <-> helper channel: one memfd (shared memory) holding a request slot and a
response slot, each announced by a 32-bit sequence word with futex wake-ups (native.py).

Layout (offsets in bytes):
  0    req_seq    (app posts, helper waits)        4   helper_sleeping
  64   resp_seq   (helper posts, app waits)        68  app_sleeping
  128  req_meta_len  132 resp_meta_len
  256  request meta (marshal)  .. 32768 ; 32768 response meta .. 65536
  65536 data area (DATA_CAP bytes): request payload, then response payload (same area), then
        NB_CAP bytes where the shim places the buffers of Isend/Irecv (the helper sends from and
        receives into them directly)
The memfd is the application's only non-stdio descriptor: blcr saves it with its content, and a
helper of a later job opens it again through /proc/<app pid>/fd/<n>.
"""
from __future__ import annotations

import marshal
import mmap
import os

import native

REQ_SEQ, HELPER_SLEEP, RESP_SEQ, APP_SLEEP = 0, 4, 64, 68
REQ_LEN, RESP_LEN = 128, 132
REQ_META, RESP_META, META_CAP = 256, 32768, 32512
DATA = 65536
DATA_CAP = int(os.environ.get("SPLIT_DATA_CAP", str(8 << 20)))  # blocking calls' payloads
NB_CAP = int(os.environ.get("SPLIT_NB_CAP", str(16 << 20)))  # Isend/Irecv buffers (bump allocated)
NB_BASE = DATA_CAP  # offset in the data area
SIZE = DATA + DATA_CAP + NB_CAP

ffi, lib = native.load()


def create(name: str) -> int:
    fd = os.memfd_create(name, 0)  # inherited by the app: no CLOEXEC
    os.ftruncate(fd, SIZE)
    return fd


class Channel:
    def __init__(self, fd: int):
        self.fd = fd
        self.mm = mmap.mmap(fd, SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.view = memoryview(self.mm)
        self.base = ffi.cast("char *", ffi.from_buffer(self.mm))
        self.data = self.view[DATA:]

    def u32(self, off: int) -> int:
        return lib.ch_load(self.base, off)

    def _set_u32(self, off: int, v: int) -> None:
        self.view[off:off + 4] = v.to_bytes(4, "little")

    # -- application side
    def call(self, meta: tuple, spin: int) -> tuple:
        m = marshal.dumps(meta)
        n = len(m)
        self.view[REQ_META:REQ_META + n] = m
        self._set_u32(REQ_LEN, n)
        seq = (lib.ch_load(self.base, REQ_SEQ) + 1) & 0xFFFFFFFF
        lib.ch_post(self.base, REQ_SEQ, HELPER_SLEEP, seq)
        while lib.ch_wait(self.base, RESP_SEQ, APP_SLEEP, (seq - 1) & 0xFFFFFFFF, spin, -1) != seq:
            pass
        n = self.u32(RESP_LEN)
        return marshal.loads(self.view[RESP_META:RESP_META + n])

    # -- helper side
    def request(self) -> tuple:
        n = self.u32(REQ_LEN)
        return marshal.loads(self.view[REQ_META:REQ_META + n])

    def respond(self, seq: int, meta: tuple) -> None:
        m = marshal.dumps(meta)
        n = len(m)
        self.view[RESP_META:RESP_META + n] = m
        self._set_u32(RESP_LEN, n)
        lib.ch_post(self.base, RESP_SEQ, APP_SLEEP, seq)

    def wait_request(self, last: int, spin: int, timeout_us: int) -> int:
        return lib.ch_wait(self.base, REQ_SEQ, HELPER_SLEEP, last, spin, timeout_us)
