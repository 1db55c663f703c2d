"""The run's output files: refused at the start when they cannot be written, the checkpoint's lock against
a second run, and writes that replace a file whole (the JSON report)."""

import errno
import fcntl
import os
import stat

from gspx_cli.errors import ConfigError

# A sidecar file holds the lock: SQLite's own locks last a transaction, not a run, and converting a
# JSON checkpoint replaces the file by rename.
LOCK_SUFFIX = ".lock"


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
            fd, tmp = _new_temp(folder, ".gspx-check-", ".tmp")
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
    fd, tmp = _new_temp(os.path.dirname(os.path.abspath(path)), ".gspx-", ".tmp")
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


def _new_temp(folder, prefix, suffix):
    """(fd, path) of a new file in folder that only its owner can read: tempfile.mkstemp's contract
    without importing tempfile (~3 ms of every run's start-up: shutil, random, bz2, lzma)."""
    for _ in range(100):
        path = os.path.join(folder, f"{prefix}{os.urandom(6).hex()}{suffix}")
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600), path
        except FileExistsError:
            continue  # 48 random bits taken already: try another name
    raise FileExistsError(errno.EEXIST, "no unused temporary file name", folder)
