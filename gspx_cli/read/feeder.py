"""The reader thread: reads batches of lines and hands them to the coordinator's inbox, a few ahead.

It only reads: parsing, mapping and settling happen on the coordinator's thread (STYLE habit 13)."""

import threading

from gspx_cli.errors import ReplacedInputError
from gspx_cli.read.reader import iter_line_batches

READ_AHEAD_BATCHES = 4  # batches read but not yet dispatched: bounds memory, and what a stop leaves unsent
WAIT_SECONDS = 0.25  # the longest it waits for room before looking whether the run stopped


class ReaderThread:
    """The reader thread: reads batches and puts them on the inbox, at most READ_AHEAD_BATCHES ahead."""

    def __init__(self, paths, inbox, stats, **read_options):
        self._paths = list(paths)
        self._inbox = inbox
        self._stats = stats
        self._options = read_options
        self._stopped = threading.Event()
        self.room = threading.Semaphore(READ_AHEAD_BATCHES)
        self._thread = threading.Thread(target=self._run, name="gspx-reader", daemon=True)

    def start(self):
        self._thread.start()

    def stop(self):
        """Read nothing more (a silent pipe is noticed within reader.POLL_SECONDS)."""
        self._stopped.set()

    def join(self, timeout):
        self._thread.join(timeout)

    def _run(self):
        error = None
        stopped = self._stopped.is_set
        try:
            for batch in iter_line_batches(self._paths, stats=self._stats, stopped=stopped, **self._options):
                while not self.room.acquire(timeout=WAIT_SECONDS):
                    if stopped():
                        break  # handed over anyway: what was read is accounted for
                self._inbox.put(("lines", batch))
                if stopped():
                    break
        except ReplacedInputError as exc:  # the run stops there, like a replaced FILE before it (exit 2)
            self._inbox.put(("stop", "replaced", exc))
        except Exception as exc:  # noqa: BLE001 - reported by the coordinator, never a dead silent thread
            error = exc
        self._inbox.put(("eof", error))
