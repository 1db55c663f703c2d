"""The reader: reads batches of lines and hands them to the coordinator's inbox, a few ahead on a thread
of its own, or one at a time on the coordinator's thread when every input is a file on disk.

It only reads: parsing, mapping and settling happen on the coordinator's thread (STYLE habit 13)."""

import os
import stat
import threading

from gspx_cli.errors import ReplacedInputError
from gspx_cli.read import remote
from gspx_cli.read.reader import iter_line_batches

READ_AHEAD_BATCHES = 4  # batches read but not yet dispatched: bounds memory, and what a stop leaves unsent
WAIT_SECONDS = 0.25  # the longest it waits for room before looking whether the run stopped


def reads_inline(paths):
    """True when every input is a regular file on disk: its reads never wait for long and its lines are
    cut while holding the GIL, so a thread of its own overlaps little with the coordinator. Cut on the
    coordinator's thread instead, each line is made, parsed and freed by one CPU (whole dry runs measured
    0.85-0.95x; a .gz file 0.90-0.99x, although zlib inflates without the GIL). Standard input, pipes and
    FIFOs (which may stay silent), directories (their walks and opens overlap the coordinator's work:
    0.98x inline, not worth it) and object stores (the network) keep the thread. A path that cannot be
    stat'ed becomes a "cannot open" line at once, so it reads inline as well."""
    paths = list(paths)
    if not paths:
        return False  # standard input
    for path in paths:
        if path == "-" or remote.is_url(path):
            return False
        try:
            mode = os.stat(path).st_mode
        except (OSError, ValueError):
            continue
        if not stat.S_ISREG(mode):
            return False
    return True


class Reader:
    """The reader: puts batches on the inbox from a thread, at most READ_AHEAD_BATCHES ahead; or (inline,
    reads_inline()) gives the coordinator the next one each time it calls pull() having nothing pending.

    run_stopped(): the run's stop flag, which an inline read looks at before each chunk it reads, so a
    signal ends a long read (a resume passing over a settled prefix, a slow mount) within one chunk."""

    def __init__(self, paths, inbox, stats, run_stopped=None, **read_options):
        self._paths = list(paths)
        self._inbox = inbox
        self._stats = stats
        self._options = read_options
        self._stopped = threading.Event()
        self._run_stopped = run_stopped
        self.room = threading.Semaphore(READ_AHEAD_BATCHES)
        self._thread = threading.Thread(target=self._run, name="gspx-reader", daemon=True)
        self.inline = reads_inline(self._paths)
        self._messages = None  # inline: the messages still to come (_produce), once started

    def start(self):
        if self.inline:
            self._messages = self._produce()
        else:
            self._thread.start()

    def stop(self):
        """Read nothing more (a silent pipe is noticed within reader.POLL_SECONDS)."""
        self._stopped.set()

    def join(self, timeout):
        if self._messages is not None:  # inline: what is open is closed now, nothing more is read
            self._messages.close()
        elif self._thread.is_alive():
            self._thread.join(timeout)

    def pull(self):
        """Inline: the next message (a batch, a stop, the end), for the coordinator to handle at once (never
        queued behind completions: one batch at a time); None when none is left or the reader has a thread."""
        if self._messages is None:
            return None
        message = next(self._messages, None)
        if message is None:
            self._messages = None
        return message

    def _run(self):
        stopped = self._stopped.is_set
        for message in self._produce():
            if message[0] == "lines":
                while not self.room.acquire(timeout=WAIT_SECONDS):
                    if stopped():
                        break  # handed over anyway: what was read is accounted for
            self._inbox.put(message)

    def _produce(self):
        """The reader's messages, in order: ("lines", batch)..., a ("stop", ...) if the run must end there,
        and ("eof", the exception of a bug in the reader or None)."""
        error = None
        stopped = self._stopped.is_set
        if self.inline and self._run_stopped is not None:  # no thread calls stop() while a pull runs
            stopped = _either(stopped, self._run_stopped)
        try:
            for batch in iter_line_batches(self._paths, stats=self._stats, stopped=stopped, **self._options):
                yield ("lines", batch)
                if stopped():
                    break
        except ReplacedInputError as exc:  # the run stops there, like a replaced FILE before it (exit 2)
            yield ("stop", "replaced", exc)
        except Exception as exc:  # noqa: BLE001 - reported by the coordinator, never a dead silent thread
            error = exc
        yield ("eof", error)


def _either(first, second):
    return lambda: first() or second()
