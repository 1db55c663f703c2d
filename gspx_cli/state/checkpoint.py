"""The checkpoint: per input, the settled prefix of lines and the few settled beyond it (STYLE habit 9),
what each input was when it was saved (its identity), and the lock that keeps it to one run at a time.
Its file is a SQLite database (store.py), which also keeps the run's memory of PX."""

import errno
import fcntl
import os
import queue
import stat
from collections import deque

from gspx_cli.read import remote
from gspx_cli.errors import ConfigError, ReplacedInputError
from gspx_cli.read.reader import source_key

# The format snapshot() describes (store.FORMAT_VERSION). 2 added each input's identity; a version 1
# file (no identities) is still read, and resumed by line count; 3 is the SQLite database.
CHECKPOINT_VERSION = 3
# Bytes hashed at the start of an input and just before its size at the save. Enough to tell a
# re-exported dump or a rotated log from the file that was read (their first and last events
# differ), cheap enough to hash at every save (CHECKPOINT_EVERY): two 64 KiB reads per input.
IDENTITY_BLOCK = 64 * 1024
# A sidecar file holds the lock: SQLite's own locks last a transaction, not a run, and converting a
# JSON checkpoint replaces the file by rename.
LOCK_SUFFIX = ".lock"


class Checkpoint:
    """Per input, the longest prefix of lines that is fully settled; saved in one transaction (STYLE habit 9).

    Workers settle lines out of order, so when a run stops, some lines beyond the prefix are already
    delivered while earlier ones were never sent. Those are saved too (`settled_after`, and
    `settled_parts` for batch lines settled in part, by event index), so a resume skips them and
    a clean stop leaves no duplicates. Both lists stay small: they only cover what was in flight.
    """

    def __init__(self, path):
        from gspx_cli.state.store import CheckpointStore  # sqlite3: only with --checkpoint (issue 13: start-up)

        self.path = path
        # the database; the delivery code keeps its messageIds, objects and requests per day there
        self.store = CheckpointStore(path)
        try:
            # key -> prefix; key -> {line: None (whole) | {index}}; key -> identity at the last save
            self.done, self._prior, self._identity = _load_state(self.store.load_inputs(), path)
        except BaseException:
            self.store.close()
            raise
        self._seen = {}  # source key -> (stat signature, identity): an input that did not change is not hashed again
        self._current = set()  # keys of this run's inputs: their identity is taken anew at each save
        self._pending = {}  # source key -> {line: outstanding records}
        self._order = {}  # source key -> deque of lines not yet in the prefix, in read order
        self._last = {}  # source key -> last line registered
        self._parts = {}  # (key, line) -> {index} settled so far, for lines settled in part
        self._keys = {}  # source as typed -> source key: abspath once per input, not per event
        self._paths = {}  # source key -> source as typed (to take a file's identity)
        self._objects = {}  # URL -> identity of the object read in this run (set by the reader thread)
        self._ends = queue.SimpleQueue()  # (URL, lines) of objects read to their end, from the reader thread
        self._object_lines = {}  # URL -> its number of lines, once read to its end
        self._dirty = set()  # keys whose entry changed since the last save: a save writes only those
        self._saved = False  # the first save writes every entry (identities taken anew)

    def _key(self, source):
        key = self._keys.get(source)
        if key is None:
            key = self._keys[source] = source_key(source)
            self._paths[key] = source
        return key

    def skip_lines(self):
        """The settled prefix of each input: the reader skips these lines."""
        return dict(self.done)

    @property
    def resumes_beyond_prefix(self):
        """True when an earlier run settled lines beyond the prefix (already_settled can say yes)."""
        return any(self._prior.values())

    def already_settled(self, record):
        """True when an earlier run settled this event beyond the prefix."""
        prior = self._prior.get(self._key(record.source))
        if not prior or record.line_no not in prior:
            return False
        parts = prior[record.line_no]
        return parts is None or record.index in parts

    def skip_settled_before(self, record):
        """True (and the record counted as settled) when an earlier run settled it beyond its prefix."""
        if not self.already_settled(record):
            return False
        self.opened(record)
        self.settled(record)
        return True

    def opened(self, record):
        """Register a record read; the first of its line opens the line with all its events outstanding."""
        if record.line_no <= 0 or record.index:  # "cannot open": no line to remember; or not the line's first
            return
        key, line = self._key(record.source), record.line_no
        self._pending.setdefault(key, {})[line] = record.count
        self._order.setdefault(key, deque()).append(line)
        self._last[key] = line
        self._dirty.add(key)

    def settled(self, record):
        """One record is settled; the prefix grows past every line whose records are all settled."""
        key, line = self._key(record.source), record.line_no
        pending = self._pending.get(key)
        if pending is None or line not in pending:
            return
        pending[line] -= 1
        self._dirty.add(key)
        if record.count > 1:  # a batch line may end settled in part: remember which events are done
            if pending[line] == 0:
                self._parts.pop((key, line), None)
            else:
                self._parts.setdefault((key, line), set()).add(record.index)
        order = self._order[key]
        while order and pending[order[0]] == 0:
            del pending[order.popleft()]

    def snapshot(self, keys=None):
        """The checkpoint's content now (of the given input keys only, when given)."""
        inputs = {}
        paths = self._paths
        for key in ({*self.done, *self._prior, *self._last} if keys is None else keys):
            if key in self._last:
                order = self._order[key]
                mark = order[0] - 1 if order else self._last[key]
            else:
                mark = self.done.get(key, 0)
            after = {line: (None if parts is None else set(parts))
                     for line, parts in self._prior.get(key, {}).items() if line > mark}
            pending = self._pending.get(key, {})
            for line in self._order.get(key, ()):
                if pending[line] == 0:
                    after[line] = None
                elif (key, line) in self._parts:
                    after[line] = (after.get(line) or set()) | self._parts[(key, line)]
            while mark + 1 in after and after[mark + 1] is None:  # whole lines right after the prefix join it
                del after[mark + 1]
                mark += 1
            entry = {"settled_lines": mark}
            whole = sorted(line for line, parts in after.items() if parts is None)
            if whole:
                entry["settled_after"] = whole
            parts = {str(line): sorted(p) for line, p in sorted(after.items()) if p}
            if parts:
                entry["settled_parts"] = parts
            current = key in self._last or key in self._current
            identity = self._identity_now(key, paths.get(key)) if current else self._identity.get(key)
            if identity is None and key != "-" and self._saved:
                # an input forgotten at an earlier save whose later lines came after it: its row has it
                saved = self.store.input_entry(key)
                identity = saved.get("identity") if saved else None
            if identity is not None and key in self._object_lines and "version" in identity:
                identity = {**identity, "lines": self._object_lines[key]}
            if identity is not None:
                entry["identity"] = identity
            inputs[key] = entry
        return {"version": CHECKPOINT_VERSION, "inputs": dict(sorted(inputs.items()))}

    def _identity_now(self, key, path):
        """The identity of an input read in this run, as it is now (a growing file: its size now)."""
        if path is None or key == "-":
            return None
        if remote.is_url(key):
            return self._objects.get(key, self._identity.get(key))
        try:
            st = os.stat(path)
        except OSError:
            return self._identity.get(key)
        signature = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        seen = self._seen.get(key)
        if seen is not None and seen[0] == signature:
            return seen[1]
        identity = file_identity(path)
        self._seen[key] = (signature, identity)
        return identity

    def check_inputs(self, paths):
        """Refuse (ConfigError, exit 2; the database closed) an input that is not the file this checkpoint
        recorded; return notes for people: a JSON checkpoint converted, inputs whose identity cannot be checked."""
        notes = [self.store.conversion_note] if self.store.conversion_note else []
        try:
            self._check_identities(paths, notes)
        except ConfigError:
            self.store.close()  # the run does not start
            raise
        return notes

    def _check_identities(self, paths, notes):
        for path in dict.fromkeys(paths or ["-"]):
            key = self._key(path)
            self._current.add(key)  # checked (or accepted with a note): what it is now is what is saved
            lines = self.done.get(key, 0)
            if not lines and not self._prior.get(key):
                continue  # nothing of it is skipped: whatever the file is now, all of it is read
            recorded = self._identity.get(key)
            if key == "-":
                notes.append(f"note: standard input: skipping the first {lines:,} lines, as {self.path} says; "
                             "gspx cannot check that the same data is piped again")
            elif remote.is_url(path):
                continue  # an object's identity is checked when the walk reaches it (verify)
            elif recorded is None:
                notes.append(f"note: {self.path} does not record what {path} was (written by an older gspx, "
                             f"or not a regular file): resuming after line {lines:,} without checking it")
            else:
                problem = _identity_problem(path, recorded)
                if problem:
                    raise ConfigError(f"{problem} {_REFUSAL_ADVICE.format(path=self.path)}",
                                      key=f"--checkpoint {self.path}")

    def verify(self, path, identity):
        """Raise ReplacedInputError when a file found in a directory or an object store (identity: the
        object's, None for a file on disk) is not the one this checkpoint recorded with lines settled.
        Called on the reader thread: it reads the recorded state and writes nothing."""
        key = source_key(path)
        recorded = self._identity.get(key)
        if recorded is None or (not self.done.get(key) and not self._prior.get(key)):
            return
        if identity is None:
            problem = _identity_problem(path, recorded)
        else:
            problem = _object_problem(path, recorded, identity)
        if problem:
            raise ReplacedInputError(f"{problem} {_REFUSAL_ADVICE.format(path=self.path)}",
                                     key=f"--checkpoint {self.path}")

    def observe(self, path, identity):
        """The identity of an object being read in this run (from the reader thread), saved with its lines."""
        self._objects[source_key(path)] = identity

    def ended(self, path, lines):
        """An object was read to its end (from the reader thread): it has `lines` lines."""
        self._ends.put((source_key(path), lines))

    def settled_whole(self, path, identity):
        """True when an earlier run read this object (as the listing's identity says it is now) to its end
        and settled every line of it: a rerun need not fetch it."""
        key = source_key(path)
        recorded = self._identity.get(key)
        if recorded is None or recorded.get("version") != identity["version"] or recorded["size"] != identity["size"]:
            return False
        lines = recorded.get("lines")
        return lines is not None and self.done.get(key, 0) >= lines and not self._prior.get(key)

    def watermarks(self):
        """Per input, the settled prefix as it stands now (saved, or in memory when newer)."""
        saved = {k: v["settled_lines"] for k, v in self.store.load_inputs().items()}
        return {**saved, **{k: v["settled_lines"] for k, v in self.snapshot()["inputs"].items()}}

    def save(self):
        """Write the inputs changed since the last save and the store's new rows in one transaction
        (StoreError, an OSError, when it cannot be written)."""
        # Only what changed is written: a backfill of a million small files must not rewrite every
        # file's row, nor take every file's identity, once a second.
        while True:  # objects read to their end since the last save: their number of lines is saved
            try:
                key, lines = self._ends.get_nowait()
            except queue.Empty:
                break
            if key in self._last or key in self.done:  # else: forgotten, and its row already has them
                self._object_lines[key] = lines
                self._dirty.add(key)
        keys = None if not self._saved else set(self._dirty)
        inputs = self.snapshot(keys)["inputs"]
        self.store.commit(inputs)
        self._saved = True
        self._dirty.difference_update(inputs)
        for key, entry in inputs.items():
            self._forget_if_finished(key, entry)

    def _forget_if_finished(self, key, entry):
        """Drop from memory an input of this run whose every line read is settled and saved, with nothing
        settled beyond its prefix: its row says it all. Memory then stays flat over a walk of a million
        files. Should more of its lines come (a growing file), they start its bookkeeping again after
        the saved prefix, as a resume would."""
        if self._order.get(key) or key not in self._last or "settled_after" in entry or "settled_parts" in entry:
            return
        if remote.is_url(key) and key not in self._object_lines:
            return  # its number of lines is still to come from the reader, and to be saved with its row
        for table in (self._pending, self._order, self._last, self._seen, self._objects, self.done, self._prior,
                      self._identity, self._object_lines):
            table.pop(key, None)
        if key not in self._current:  # a typed input keeps its path: its later lines need its identity
            source = self._paths.pop(key, None)
            if source is not None:
                self._keys.pop(source, None)

    def close(self):
        """Close the database; what was not saved is dropped."""
        self.store.close()


def _load_state(inputs, path):
    """(prefix, lines settled beyond it, identity) per input, from the store's entries."""
    try:
        done, prior, identities = {}, {}, {}
        for key, entry in inputs.items():
            done[key] = int(entry["settled_lines"])
            after = {int(line): None for line in entry.get("settled_after", ())}
            for line, indices in entry.get("settled_parts", {}).items():
                after[int(line)] = {int(i) for i in indices}
            if after:
                prior[key] = after
            identity = entry.get("identity")
            if identity is not None and identity.get("version") is not None:  # an object in a store
                identities[key] = {"size": int(identity["size"]), "version": str(identity["version"])}
                if identity.get("lines") is not None:
                    identities[key]["lines"] = int(identity["lines"])
            elif identity is not None:
                identities[key] = {"size": int(identity["size"]), "block": int(identity["block"]),
                                   "head_sha256": str(identity["head_sha256"]),
                                   "tail_sha256": str(identity["tail_sha256"])}
        return done, prior, identities
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ConfigError("not a gspx checkpoint file", file=path, key="--checkpoint") from None


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
    import hashlib  # hashlib and tempfile: only with --checkpoint (issue 13: start-up)

    return {"size": size, "block": block, "head_sha256": hashlib.sha256(head).hexdigest(),
            "tail_sha256": hashlib.sha256(tail).hexdigest()}


_REFUSAL_ADVICE = "Use another --checkpoint to send it as a new input, or delete {path} to send everything again"


def _object_problem(url, recorded, identity):
    """Why the object at url is not the recorded one (None when it is): objects are written whole, so
    any other version or size is another object."""
    if "version" not in recorded:
        return None  # recorded as a file on disk: nothing to compare an object with
    if identity["version"] == recorded["version"] and identity["size"] == recorded["size"]:
        return None
    return (f"{url}: the object differs from when the checkpoint was saved ({recorded['version']}, "
            f"{recorded['size']:,} bytes then; {identity['version']}, {identity['size']:,} bytes now): replaced?")


def _identity_problem(path, recorded):
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


def check_writable(path, option, *, replaced=False):
    """Refuse (ConfigError, exit 2) an output path that cannot be written: a directory, a missing or
    read-only folder, a file without write permission. `replaced`: the checkpoint, a SQLite database
    that creates its journal beside it (and a JSON one is replaced by its conversion), so its folder
    must take new files and the path, when it exists, must be a regular file that can be written.
    Leaves nothing behind: an output that is never written to is never created."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise ConfigError(f"cannot write: {exc.strerror}", key=f"{option} {path}") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise ConfigError("cannot write: it is a directory", key=f"{option} {path}")
    if st is not None and replaced and not stat.S_ISREG(st.st_mode):
        raise ConfigError("not a regular file (the checkpoint is a SQLite database)", key=f"{option} {path}")
    if not os.path.isdir(folder):
        raise ConfigError(f"cannot write: no such directory: {folder}", key=f"{option} {path}")
    # Real test writes rather than os.access, which says yes to root and knows nothing of read-only
    # mounts: appending nothing to an existing file, or a temp file where a new one would go.
    if st is not None:
        _try_write(path, path, option)
    if st is None or replaced:
        _try_write(f"in {folder}", path, option, folder=folder)


def _try_write(where, path, option, folder=None):
    """Append nothing to path, or create and remove a temp file in folder; ConfigError naming where if not."""
    try:
        if folder is None:
            with open(path, "ab"):
                pass
        else:
            import tempfile

            fd, tmp = tempfile.mkstemp(prefix=".gspx-check-", suffix=".tmp", dir=folder)
            os.close(fd)
            os.unlink(tmp)
    except OSError as exc:
        raise ConfigError(f"cannot write {where}: {exc.strerror}", key=f"{option} {path}") from None


class CheckpointLock:
    """An exclusive flock on PATH.lock for the run's lifetime: a second run with the same checkpoint is
    refused. The kernel drops the lock when the process ends, however it ends (SIGKILL included), so a
    lock left behind never blocks; the file itself stays (removing it would race with a starting run)."""

    def __init__(self, path):
        self.path = path + LOCK_SUFFIX
        self._fd = None

    def acquire(self):
        """Take the lock, or raise ConfigError (exit 2) naming the checkpoint."""
        checkpoint = self.path[: -len(LOCK_SUFFIX)]
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise ConfigError(f"cannot create the lock file {self.path}: {exc.strerror}",
                              key=f"--checkpoint {checkpoint}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise ConfigError("in use by another gspx run (it holds the lock on "
                                  f"{self.path}); wait for it to end, or use another --checkpoint",
                                  key=f"--checkpoint {checkpoint}") from None
            raise ConfigError(f"cannot lock {self.path}: {exc.strerror}", key=f"--checkpoint {checkpoint}") from None
        self._fd = fd
        return self

    def release(self):
        """Let the next run have it."""
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor releases the flock
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def atomic_write(path, data):
    """Write to a temp file in the same folder, fsync, then rename over the target."""
    folder = os.path.dirname(os.path.abspath(path))
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=".gspx-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
