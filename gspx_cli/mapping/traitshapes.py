"""An identify's or a group's traits mapped by code made once per trait-name shape (issue 22).

The events of a source most often carry the same trait names in the same order: for such a shape, the
body collect_common(), the names loop and finish() would build is known but for the values. Shapes.body()
makes, once per shape, a function that takes the values in one unpacking, checks each is what the general
way passes unchanged (text, or an int PX holds) or converts it, and builds the body as one literal, in the
order the general way inserts its keys. Any value that needs more (None, "", another type, a failed
conversion), context.traits (an identify's), a missing first alias of a name: None, and the builder takes
the general way.
"""

from gspx_cli.mapping.convert import INT64_MAX, INT64_MIN, iso_ms, to_epoch_ms, to_number
from gspx_cli.mapping.reading import BODY, COORDINATES, CUSTOM, LOCATION

_MAX_SHAPES = 64  # a handful occur; past this many the rest take the general way (bounds memory and compiling)


class Shapes:
    """Per trait-name shape, the function making a body from those traits' values, or None (general way)."""

    def __init__(self, table, names, tail):
        self._table = table  # reading.trait_table()'s rows
        self._names = names  # the px of each name field, read from its first alias (an identify's), else ()
        self._tail = tail  # source text of the literal's last entries (constant per run)
        self._made = {}

    def body(self, traits, warnings):
        """The body the general way would build from `traits` alone (no context.traits), its conversions'
        warnings appended; or None: take the general way (warnings may then hold some: drop them)."""
        shape = tuple(traits)
        make = self._made.get(shape, False)
        if make is False:
            if len(self._made) >= _MAX_SHAPES:
                return None
            make = self._made[shape] = self._compile(shape)
        if make is None:
            return None
        return make(traits, warnings)

    def _compile(self, shape):
        """The shape's function (see the module's doc), or None when a name field's first alias is absent."""
        if any(px not in shape for px in self._names):
            return None
        lines = []
        slots = ([], [], [], [])  # per slot, (px, value expression) in the order collect() inserts them
        conversions = {}
        for i, name in enumerate(shape):
            row = self._table.get(name)
            if row is None:
                continue
            slot, px, convert, label = row[0], row[1], row[2], row[3]
            value = f"v{i}"
            if convert is None:
                lines.append(f"if not ({value}.__class__ is str and {value} or {value}.__class__ is int "
                             f"and {INT64_MIN} <= {value} <= {INT64_MAX}): return None")
            else:
                conversions[f"c{i}"] = convert
                # null and "" are no value: the general way leaves them out, whatever a conversion makes of them
                lines.append(f"if {value} is None or {value} == '': return None")
                if convert is to_epoch_ms:  # what to_epoch_ms() returns first, without its call
                    lines.append(f"w{i} = iso_ms({value}) if {value}.__class__ is str else None")
                    lines.append(f"if w{i} is None: w{i} = c{i}({value}, {label!r}, warnings)")
                elif convert is to_number:  # an int PX holds is its own number, without the call
                    lines.append(f"w{i} = {value} if {value}.__class__ is int and {INT64_MIN} <= {value} <= "
                                 f"{INT64_MAX} else c{i}({value}, {label!r}, warnings)")
                else:
                    lines.append(f"w{i} = c{i}({value}, {label!r}, warnings)")
                lines.append(f"if w{i} is None: return None")
                value = f"w{i}"
            slots[slot].append((px, value))
        for px in self._names:  # a name's first alias used as it is: a non-empty text
            value = f"v{shape.index(px)}"
            lines.append(f"if not ({value}.__class__ is str and {value}): return None")
            slots[BODY].append((px, value))
        entries = [_literal(slots[BODY])]
        location = [_literal(slots[LOCATION])]
        if slots[COORDINATES]:
            location.append(f"'coordinates': {{{_literal(slots[COORDINATES])}}}")
        if slots[LOCATION] or slots[COORDINATES]:
            entries.append(f"'location': {{{', '.join(filter(None, location))}}}")
        if slots[CUSTOM]:
            entries.append(f"'customAttributes': {{{_literal(slots[CUSTOM])}}}")
        entries.append(self._tail)
        unpack = "".join(f"v{i}, " for i in range(len(shape)))
        source = "\n".join((
            "def make(traits, warnings):",
            f"    {unpack}= traits.values()" if shape else "    pass",
            *(f"    {line}" for line in lines),
            f"    return {{{', '.join(filter(None, entries))}}}",
        ))
        namespace = {"iso_ms": iso_ms, **conversions}
        # the text holds only the table's names and labels (as repr() writes them), never an event's
        exec(compile(source, "<traits shape>", "exec"), namespace)  # noqa: S102
        return namespace["make"]


def _literal(pairs):
    """A dict literal's entries; a repeated key keeps its first place and takes its last value, as
    assignments in that order do."""
    return ", ".join(f"{px!r}: {value}" for px, value in pairs)
