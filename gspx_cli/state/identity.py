"""What an input was when the checkpoint saved it (its identity), and why one found now is not that input.

A file on disk: its size, and the sha256 of its first and last IDENTITY_BLOCK bytes; for a file found in
a directory and read to its end, also its mtime, inode and number of lines then, so a rerun that finds it
unchanged (one stat) skips it without opening it. An object in a store: its version (ETag or generation)
and size, and its number of lines once read to its end.
"""

import os
import stat
from typing import NamedTuple

from gspx_cli.errors import ConfigError

# Bytes hashed at the start of an input and just before its size at the save. Enough to tell a
# re-exported dump or a rotated log from the file that was read (their first and last events
# differ), cheap enough to hash at every save (CHECKPOINT_EVERY): two 64 KiB reads per input.
IDENTITY_BLOCK = 64 * 1024
# A file modified this recently when read to its end is not skipped on its stat alone by a rerun: a
# rewrite of the same size within the file system's mtime granularity would not change its stat.
SETTLE_NS = 1_000_000_000

REFUSAL_ADVICE = "Use another --checkpoint to send it as a new input, or delete {path} to send everything again"


class Recorded(NamedTuple):
    """One input as an earlier save left it."""

    prefix: int  # the settled prefix of lines
    after: dict  # line beyond the prefix -> None (settled whole) or {event index} (a batch line in part)
    identity: dict  # or None: not recorded (JSON format 1, standard input, not a regular file)



def recorded(entry, path):
    """The Recorded of a store entry (store.input_entry); ConfigError naming path when it is not one."""
    try:
        after = {int(line): None for line in entry.get("settled_after", ())}
        for line, indices in entry.get("settled_parts", {}).items():
            after[int(line)] = {int(i) for i in indices}
        identity = entry.get("identity")
        if identity is not None and identity.get("version") is not None:  # an object in a store
            identity = {"size": int(identity["size"]), "version": str(identity["version"]),
                        **_ints(identity, ("lines",))}
        elif identity is not None:
            identity = {"size": int(identity["size"]), "block": int(identity["block"]),
                        "head_sha256": str(identity["head_sha256"]), "tail_sha256": str(identity["tail_sha256"]),
                        **_ints(identity, ("lines", "mtime_ns", "inode"))}
        return Recorded(int(entry["settled_lines"]), after, identity)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ConfigError("not a gspx checkpoint file", file=path, key="--checkpoint") from None


def _ints(identity, names):
    return {name: int(identity[name]) for name in names if identity.get(name) is not None}


def file_identity(path, size=None, block=IDENTITY_BLOCK):
    """A regular file's identity: its size (or `size`) and the sha256 of its first `block` bytes and of
    the `block` bytes before that size; None for a pipe, a device or a file that cannot be read."""
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                return None
            if size is None:
                size = st.st_size
            head = fh.read(min(block, size))
            start = max(0, size - block)
            fh.seek(start)
            tail = fh.read(size - start)
    except OSError:
        return None
    import hashlib  # hashlib: only with --checkpoint (issue 13: start-up)

    return {"size": size, "block": block, "head_sha256": hashlib.sha256(head).hexdigest(),
            "tail_sha256": hashlib.sha256(tail).hexdigest()}


def read_whole(fh, now_ns):
    """(size, mtime_ns, inode) of an open file just read to its end, when that is all of it and it was
    not modified in the last SETTLE_NS (else None): what a rerun compares a stat with."""
    try:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_size != fh.tell() or st.st_mtime_ns > now_ns - SETTLE_NS:
            return None
    except (OSError, ValueError, AttributeError):
        return None
    return st.st_size, st.st_mtime_ns, st.st_ino


def object_problem(url, recorded, identity):
    """Why the object at url is not the recorded one (None when it is): objects are written whole, so
    any other version or size is another object."""
    if "version" not in recorded:
        return None  # recorded as a file on disk: nothing to compare an object with
    if identity["version"] == recorded["version"] and identity["size"] == recorded["size"]:
        return None
    return (f"{url}: the object differs from when the checkpoint was saved ({recorded['version']}, "
            f"{recorded['size']:,} bytes then; {identity['version']}, {identity['size']:,} bytes now): replaced?")


def file_problem(path, recorded):
    """Why the file at path is not the recorded one (None when it is, or only grew since)."""
    if "version" in recorded:
        return None  # recorded as an object in a store
    try:
        size = os.stat(path).st_size
    except OSError:
        return None  # the reader reports a missing input in its own words
    if size < recorded["size"]:
        return (f"{path} is shorter than when the checkpoint was saved ({size:,} < {recorded['size']:,} bytes): "
                "replaced or truncated?")
    now = file_identity(path, size=recorded["size"], block=recorded["block"])
    if now is None:
        return None
    for part, where in (("head_sha256", "its first"), ("tail_sha256", "the last")):
        if now[part] != recorded[part]:
            n = min(recorded["block"], recorded["size"])
            return (f"{path}: content differs from when the checkpoint was saved ({where} {n:,} bytes "
                    f"of the {recorded['size']:,} read then): replaced or rewritten?")
    return None
