"""The checkpoint: per input, the settled prefix of lines and the few settled beyond it (bookkeeping.py),
what each input was when it was saved (identity.py), and the lock that keeps it to one run at a time
(outputs.py). Its file is a SQLite database (store.py), which also keeps the run's memory of PX.

Nothing is loaded whole at open: an input's row is looked up when the run reaches it, by the reader
(watch.py, on a connection of its own) and by the bookkeeping, and leaves memory once settled and saved.
"""

from gspx_cli.errors import ConfigError
from gspx_cli.read import remote
from gspx_cli.read.names import source_key
from gspx_cli.state.bookkeeping import Bookkeeping
from gspx_cli.state.identities import Identities
from gspx_cli.state.identity import REFUSAL_ADVICE, file_identity, file_problem, recorded  # noqa: F401 (API)
from gspx_cli.state.outputs import LOCK_SUFFIX, CheckpointLock, atomic_write, check_writable  # noqa: F401 (API)

# The format snapshot() describes (store.FORMAT_VERSION). 2 added each input's identity; a version 1
# file (no identities) is still read, and resumed by line count; 3 is the SQLite database.
CHECKPOINT_VERSION = 3
# Inputs read to their end written per transaction at most (save()): what one save holds in memory.
ENDS_PER_COMMIT = 2048


class Checkpoint:
    """The run's bookkeeping of settled lines, with each input's identity, saved in one transaction."""

    def __init__(self, path):
        from gspx_cli.state.store import CheckpointStore  # sqlite3: only with --checkpoint (issue 13: start-up)

        self.path = path
        # the database; the delivery code keeps its messageIds, objects and requests per day there
        self.store = CheckpointStore(path)
        self.book = Bookkeeping(self._saved_row)
        self._beyond = None  # whether an earlier run settled lines beyond some prefix (asked once)
        self._watch = None  # the reader's view (watch()), closed with the checkpoint
        self.identities = Identities()  # what each input is now, and what the reader saw of it
        self._current = set()  # keys of this run's typed inputs: their identity is taken anew at each save
        self._keys = {}  # source as typed -> source key: abspath once per input, not per event
        self._paths = {}  # source key -> source as typed (to take a file's identity)
        self._saved = False  # the first save also writes the typed inputs (identities taken anew)

    def _saved_row(self, key):
        entry = self.store.input_entry(key)
        return None if entry is None else recorded(entry, self.path)

    def _key(self, source):
        key = self._keys.get(source)
        if key is None:
            key = self._keys[source] = source_key(source)
            self._paths[key] = source
        return key

    def watch(self):
        """What the reader asks when the walk reaches an input (watch.InputWatch: skip_lines, verify,
        settled_whole, unchanged, observe, ended), on a read-only connection of its own."""
        from gspx_cli.state.watch import InputWatch

        if self._watch is None:
            self._watch = InputWatch(self.path, self.store.reader(), self.identities.objects, self.identities.ends)
        return self._watch

    def settled_prefix(self, source):
        """The settled prefix an earlier run saved of an input (what the reader skips)."""
        found = self.book.recorded(self._key(source))
        return found.prefix if found is not None else 0

    @property
    def resumes_beyond_prefix(self):
        """True when an earlier run settled lines beyond the prefix (already_settled can say yes)."""
        if self._beyond is None:
            self._beyond = self.store.settled_beyond_any_prefix()
        return self._beyond

    def already_settled(self, record):
        """True when an earlier run settled this event beyond the prefix."""
        return self.book.already_settled(self._key(record.source), record.line_no, record.index)

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
        self.book.opened(self._key(record.source), record.line_no, record.count)

    def settled(self, record):
        """One record is settled; the prefix grows past every line whose records are all settled."""
        self.book.settled(self._key(record.source), record.line_no, record.index, record.count)

    def snapshot(self, keys=None):
        """The checkpoint's content now, of the inputs in memory (or of the given keys)."""
        inputs = {}
        for key in (self.book.in_memory() if keys is None else keys):
            entry = self.book.entry(key)
            identity = self._identity_of(key)
            if identity is not None:
                entry["identity"] = identity
            inputs[key] = entry
        return {"version": CHECKPOINT_VERSION, "inputs": dict(sorted(inputs.items()))}

    def _identity_of(self, key):
        """The identity saved with the input: as it is now when this run read it, else as recorded."""
        book = self.book
        now = book.read_in_this_run(key) or key in self._current
        found = book.recorded(key) if key != "-" else None
        return self.identities.of(key, self._paths.get(key, key), now, found.identity if found is not None else None)

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
            found = self.book.recorded(key)
            if found is None or (not found.prefix and not found.after):
                continue  # nothing of it is skipped: whatever the file is now, all of it is read
            lines = found.prefix
            if key == "-":
                notes.append(f"note: standard input: skipping the first {lines:,} lines, as {self.path} says; "
                             "gspx cannot check that the same data is piped again")
            elif remote.is_url(path):
                continue  # an object's identity is checked when the walk reaches it (watch.verify)
            elif found.identity is None:
                notes.append(f"note: {self.path} does not record what {path} was (written by an older gspx, "
                             f"or not a regular file): resuming after line {lines:,} without checking it")
            else:
                problem = file_problem(path, found.identity)
                if problem:
                    raise ConfigError(f"{problem} {REFUSAL_ADVICE.format(path=self.path)}",
                                      key=f"--checkpoint {self.path}")

    def watermarks(self):
        """Per input, the settled prefix as it stands now (saved, or in memory when newer); tests and tools."""
        saved = {k: v["settled_lines"] for k, v in self.store.load_inputs().items()}
        return {**saved, **{k: v["settled_lines"] for k, v in self.snapshot()["inputs"].items()}}

    def save(self):
        """Write the inputs changed since the last save and the store's new rows (StoreError, an OSError,
        when they cannot be written): one transaction, or one per ENDS_PER_COMMIT inputs read to their end."""
        # Only what changed is written: a backfill of a million small files must not rewrite every
        # file's row, nor take every file's identity, once a second.
        book = self.book
        known = lambda key: book.read_in_this_run(key) or self.store.input_entry(key) is not None  # noqa: E731
        while True:
            ended, more = self.identities.take_ends(known, ENDS_PER_COMMIT)
            book.dirty.update(ended)
            self._commit()
            if not more:
                return

    def _commit(self):
        book = self.book
        keys = set(book.dirty)
        if not self._saved:
            keys.update(key for key in self._current if book.read_in_this_run(key) or book.recorded(key))
        inputs = self.snapshot(keys)["inputs"]
        self.store.commit(inputs)
        self._saved = True
        book.dirty.difference_update(inputs)
        for key, entry in inputs.items():
            self._forget_if_finished(key, entry)

    def _forget_if_finished(self, key, entry):
        """Drop from memory an input whose every line read is settled and saved, with nothing settled beyond
        its prefix: its row says it all. Memory then stays flat over a walk of a million files."""
        if self.book.unsettled(key) or "settled_after" in entry or "settled_parts" in entry:
            return
        if remote.is_url(key) and self.book.read_in_this_run(key) and not self.identities.ended(key):
            return  # its number of lines is still to come from the reader, and to be saved with its row
        self.book.forget(key)
        self.identities.forget(key)
        if key not in self._current:  # a typed input keeps its path: its later lines need its identity
            source = self._paths.pop(key, None)
            if source is not None:
                self._keys.pop(source, None)

    def close(self):
        """Close the database (and the reader's connection); what was not saved is dropped."""
        if self._watch is not None:
            self._watch.close()
        self.store.close()
