"""Which messageIds were delivered, so no event is sent twice (MAPPING.md "Duplicate events").

With a checkpoint, its database remembers them across runs; without one, the most recent
MEMORY_LIMIT of this run are kept, in ~22 bytes each (RunMemory).
"""

import mmap
from array import array

DUPLICATE = "duplicate messageId"  # the skip reason the counts group by; dry-run lines add "first at"
MEMORY_LIMIT = 1_000_000  # CLI.md "The checkpoint": without one, the most recent 1,000,000 messageIds
_LINE_BITS = 40  # a place is source number << 40 | line: 2**40 lines an input, 2**24 inputs remembered at once
_SLOTS_PER_ID = 3  # halves: the table has 1.5 slots per id remembered
_EMPTY = 0
# The ring's item formats: a memoryview stores a C long through PyLong_AsLong, where array("q").append and
# array("Q") go through argument parsing and a byte-array conversion per 64-bit value (ids are added once
# per event of a dry run). "l" is 64 bits on Linux and macOS; where a long is 32 bits, long long it is.
_KEY_FORMAT, _PLACE_FORMAT = ("l", "L") if array("l").itemsize == 8 else ("q", "Q")


class RunMemory:
    """The messageIds delivered in this run, the most recent `limit` of them (oldest forgotten first).

    A dict of a million ids costs ~110 bytes each (the str hash as an int object, the packed place, the
    dict slot, the order), so the memory is flat arrays instead: a ring of (hash, place) in delivery
    order, 16 bytes an id, and an open-addressing table of ring positions (uint32, linear probing, at
    most 2/3 full: ~6 bytes an id). Keys are hash(messageId): Python's string hash is stable within a
    process, and two of a million ids meet on one 64-bit hash about once in 30 million runs.

    The input names of the places are kept while an id of theirs is remembered: a source is dropped
    when its last remembered id is forgotten, so a walk over a million files does not grow them.
    """

    def __init__(self, limit=MEMORY_LIMIT):
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._limit = limit
        # the ring, sized for the limit at once (no reallocation and copy as it fills):
        self._keys = _anonymous(limit, 8, _KEY_FORMAT)  # position -> hash, oldest at self._oldest once full
        self._places = _anonymous(limit, 8, _PLACE_FORMAT)  # position -> source number << 40 | line
        self._oldest = 0  # ring position of the oldest id, once the ring is full
        # slot -> ring position + 1 (0: empty), sized for the limit at once (never rebuilt) and at most
        # 2/3 full
        self._size = limit * _SLOTS_PER_ID // 2 + 1
        self._slots = _anonymous(self._size, 4, "I")
        self._numbers = {}  # source -> its number, while remembered
        self._sources = {}  # number -> [source, count when its last id was added, number << 40]
        self._next_number = 0
        self._added = 0  # ids added in all (a source's last id is forgotten when this passes it by limit)
        self._last_source = self._last_entry = None

    def __len__(self):
        return min(self._added, self._limit)

    def delivered_at(self, message_id):
        """FILE:LINE where it was first delivered; None when never, as far as remembered."""
        position = self._find(hash(message_id))
        if position < 0:
            return None
        return self._where(self._places[position])

    def add(self, message_id, source, line_no):
        """Remember one delivered messageId (the first place given is kept)."""
        self.first_or_add(message_id, source, line_no)

    def first_or_add(self, message_id, source, line_no):
        """FILE:LINE of its first delivery when remembered; else None, and it is remembered from here."""
        key = hash(message_id)
        slots = self._slots
        slot = key % self._size
        held = slots[slot]
        if held:  # the probe of _find, inlined: this runs once per event of a dry run
            keys, size = self._keys, self._size
            while held:
                if keys[held - 1] == key:
                    return self._where(self._places[held - 1])
                slot += 1
                if slot == size:
                    slot = 0
                held = slots[slot]
        entry = self._last_entry if source is self._last_source else self._entry(source)
        position = self._added  # its ring position while the ring still fills
        added = entry[1] = self._added = position + 1
        if added <= self._limit:
            self._keys[position] = key
            self._places[position] = entry[2] | line_no
            slots[slot] = added
        else:
            self._replace_oldest(key, entry[2] | line_no)
        return None

    # -- the table ----------------------------------------------------------------------------------
    def _find(self, key):
        keys, slots, size = self._keys, self._slots, self._size
        slot = key % size
        while True:
            held = slots[slot]
            if held == _EMPTY:
                return -1
            if keys[held - 1] == key:
                return held - 1
            slot += 1
            if slot == size:
                slot = 0

    def _replace_oldest(self, key, place):
        """The ring is full: the oldest id is forgotten and its position takes the new one."""
        position = self._oldest
        self._forget(position)
        self._keys[position] = key
        self._places[position] = place
        self._oldest = position + 1 if position + 1 < self._limit else 0
        self._slots[self._empty_slot(key)] = position + 1  # the deletion may have shifted the probe path

    def _empty_slot(self, key):
        slots, size = self._slots, self._size
        slot = key % size
        while slots[slot] != _EMPTY:
            slot = (slot + 1) % size
        return slot

    def _forget(self, position):
        """Take the id at a ring position out of the table (backward-shift deletion: no tombstones, so
        lookups of ids never seen stay short however many were forgotten)."""
        keys, slots, size = self._keys, self._slots, self._size
        mine = position + 1
        slot = keys[position] % size
        while slots[slot] != mine:
            slot += 1
            if slot == size:
                slot = 0
        hole = slot
        while True:
            slot += 1
            if slot == size:
                slot = 0
            held = slots[slot]
            if held == _EMPTY:
                break
            # the entry at slot may fill the hole unless its home lies cyclically in (hole, slot]
            distance = slot - keys[held - 1] % size
            if distance < 0:
                distance += size
            gap = slot - hole
            if gap < 0:
                gap += size
            if distance >= gap:
                slots[hole] = held
                hole = slot
        slots[hole] = _EMPTY
        self._drop_source(self._places[position] >> _LINE_BITS)

    # -- places -------------------------------------------------------------------------------------
    def _entry(self, source):
        """[source, count when its last id was added, its number << 40] of an input, made when new."""
        number = self._numbers.get(source)
        if number is None:
            number = self._numbers[source] = self._next_number
            self._next_number = (number + 1) & ((1 << (64 - _LINE_BITS)) - 1)
            self._sources[number] = [source, 0, number << _LINE_BITS]
        self._last_source, self._last_entry = source, self._sources[number]
        return self._last_entry

    def _where(self, place):
        return f"{self._sources[place >> _LINE_BITS][0]}:{place & ((1 << _LINE_BITS) - 1)}"

    def _drop_source(self, number):
        # ids are forgotten in the order added: once the one added at a source's last count goes, none is left
        entry = self._sources[number]
        if entry[1] <= self._added - self._limit:
            del self._sources[number]
            if self._numbers.get(entry[0]) == number:
                del self._numbers[entry[0]]
            if entry is self._last_entry:
                self._last_source = self._last_entry = None


def _anonymous(count, itemsize, item_format):
    """A zeroed flat array of count items in anonymous memory: a page costs only once an id lands in it."""
    return memoryview(mmap.mmap(-1, count * itemsize)).cast(item_format)


class StoredMemory:
    """The messageIds delivered by every run with this checkpoint (its database)."""

    def __init__(self, store):
        self._store = store

    def delivered_at(self, message_id):
        """FILE:LINE where it was first delivered ("" when unknown); None when never."""
        return self._store.delivered_at(message_id)

    def add(self, message_id, source, line_no):
        """Remember one delivered messageId (written with the checkpoint's next save; the store keeps the
        first place it was given, so no lookup first)."""
        self._store.add_delivered(message_id, f"{source}:{line_no}")

    def first_or_add(self, message_id, source, line_no):
        """FILE:LINE of its first delivery when remembered; else None, and it is remembered from here."""
        first = self._store.delivered_at(message_id)
        if first is None:
            self._store.add_delivered(message_id, f"{source}:{line_no}")
        return first
