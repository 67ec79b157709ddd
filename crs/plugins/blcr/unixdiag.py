"""The peer of a Unix socket, by inode, through the kernel's sock_diag netlink interface.

Nothing else tells which descriptor is the other end of a socketpair.
"""
from __future__ import annotations

import socket
import struct

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
UDIAG_SHOW_PEER = 0x4
UNIX_DIAG_PEER = 2


def unix_peer(inode: int) -> int | None:
    """Inode of the socket connected to the Unix socket ``inode``; None when it has no peer."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as nl:
        # struct unix_diag_req: family, protocol, pad, states, ino, show, cookie[2]
        req = struct.pack("=BBHIIIII", socket.AF_UNIX, 0, 0, 0xFFFFFFFF, inode, UDIAG_SHOW_PEER,
                          0xFFFFFFFF, 0xFFFFFFFF)
        nl.send(struct.pack("=IHHII", 16 + len(req), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 1, 0)
                + req)
        data = nl.recv(65536)
    length, kind = struct.unpack_from("=IH", data)
    if kind == NLMSG_ERROR:
        return None
    # struct unix_diag_msg (16 bytes) follows the 16-byte header, then attributes
    pos = 32
    while pos + 4 <= length:
        alen, atype = struct.unpack_from("=HH", data, pos)
        if alen < 4:
            break
        if atype == UNIX_DIAG_PEER:
            return struct.unpack_from("=I", data, pos + 4)[0]
        pos += (alen + 3) & ~3
    return None
