"""Pure mapping of one RudderStack event to what Gainsight PX needs (MAPPING.md).

No I/O, no clock, no logging: the result (Plan, Skipped or Invalid) carries its warnings.
Mapper picks the event's builder (builders.py, each made once per run from the Settings); conversions
are in convert.py, reading values from an event in reading.py. map() is the hot path.
"""

from gspx_cli.mapping import fields
from gspx_cli.mapping.builders import GroupBuilder, IdentifyBuilder, TrackBuilder
# the conversions, as callers knew them here (filters, cli, tests)
from gspx_cli.mapping.convert import (CONVERSIONS, INT64_MAX, INT64_MIN, show, to_epoch_ms, to_float,  # noqa: F401
                                      to_gender, to_number, to_str)
from gspx_cli.mapping.plan import Invalid, Skipped
from gspx_cli.mapping.reading import integration, message_id  # noqa: F401 - message_id: the coordinator's


class Mapper:
    """Maps events for one run's Settings; everything per-run is computed here, once."""

    def __init__(self, settings):
        self._handlers = {"identify": IdentifyBuilder(settings), "group": GroupBuilder(settings),
                          "track": TrackBuilder(settings)}
        # what map() calls: each builder's bound __call__, as calling the instance goes through the type's
        # call slot (an argument tuple and a method look-up per event)
        self._calls = {name: builder.__call__ for name, builder in self._handlers.items()}

    def map(self, event):
        """One event -> Plan, Skipped or Invalid."""
        if event.__class__ is dict:  # the usual event: a type in lower case, no integrations to read
            raw_type = event.get("type")
            if raw_type.__class__ is str:
                handler = self._calls.get(raw_type)
                if handler is not None and not event.get("integrations"):
                    return handler(event, raw_type, None)
        return self.general(event)

    def general(self, event):
        """map() of any value."""
        if not isinstance(event, dict):
            return Invalid("event is not a JSON object")
        raw_type = event.get("type")
        if not isinstance(raw_type, str) or not raw_type:
            return Invalid("event has no type")
        event_type = raw_type.lower()
        handler = self._calls.get(event_type)
        if handler is None:
            if event_type in fields.SKIPPED_TYPES:
                return Skipped(event_type, f"{event_type} events are not sent to Gainsight PX")
            return Invalid(f"unknown event type {show(raw_type)}")
        integrations = event.get("integrations")
        options = None
        if integrations and isinstance(integrations, dict):
            off, options = integration(integrations)
            if off:
                return Skipped(event_type, off)
        return handler(event, event_type, options)


def map_event(event, settings):
    """Map one event with a one-off Mapper (convenience; reuse a Mapper for many events)."""
    return Mapper(settings).map(event)
