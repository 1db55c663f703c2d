"""MAPPING.md's field tables as data; the builders (builders.py, reading.py) read them.

Each conversion is named by a string ("timestamp", "number", "float", "string", "gender");
None means the value is sent as it is. convert.py names the functions; the builders bind them once per run.
"""


class Field:
    """One PX field: its name, the trait names read (first usable wins), its conversion. A value, written
    out: @dataclass generates and compiles its methods at every start (issue 22)."""

    __slots__ = ("px", "traits", "convert")

    def __init__(self, px, traits, convert=None):
        self.px = px
        self.traits = traits
        self.convert = convert

    def __eq__(self, other):
        if type(other) is not Field:
            return NotImplemented
        return (self.px, self.traits, self.convert) == (other.px, other.traits, other.convert)

    def __hash__(self):
        return hash((self.px, self.traits, self.convert))

    def __repr__(self):
        return f"Field(px={self.px!r}, traits={self.traits!r}, convert={self.convert!r})"


def _fields(*rows):
    return tuple(Field(px, (px,), convert) for px, convert in rows)


# MAPPING.md "identify": default attributes (firstName/lastName are in NAME_FIELDS)
USER_FIELDS = _fields(
    ("email", None),
    ("accountId", "string"),
    ("gender", "gender"),
    ("lastSeenDate", "timestamp"),
    ("signUpDate", "timestamp"),
    ("firstVisitDate", "timestamp"),
    ("score", "number"),
    ("role", None),
    ("subscriptionId", None),
    ("numberOfVisits", None),
    ("createDate", "timestamp"),
    ("globalUnsubscribe", None),
    ("sfdcContactId", None),
    ("title", None),
    ("phone", None),
)

# MAPPING.md "identify", Names: aliases in this order, all of `traits` before `context.traits`
NAME_FIELDS = (
    Field("firstName", ("firstName", "firstname", "first_name")),
    Field("lastName", ("lastName", "lastname", "last_name")),
)
# the string trait split at its first space when firstName or lastName is still missing
FULL_NAME_TRAIT = "name"

# MAPPING.md "identify", Location: location.<px> <- trait; shared by users and accounts
LOCATION_FIELDS = _fields(
    ("countryName", None),
    ("countryCode", None),
    ("stateName", None),
    ("stateCode", None),
    ("city", None),
    ("street", None),
    ("postalCode", None),
    ("continent", None),
    ("regionName", None),
    ("timeZone", None),
)
# location.coordinates.<px> <- trait
COORDINATE_FIELDS = _fields(
    ("latitude", "float"),
    ("longitude", "float"),
)

# MAPPING.md "group": account attributes, from `traits` only
ACCOUNT_FIELDS = _fields(
    ("name", None),
    ("trackedSubscriptionId", None),
    ("sfdcId", None),
    ("dunsNumber", None),
    ("industry", None),
    ("numberOfEmployees", "number"),
    ("sicCode", None),
    ("website", None),
    ("naicsCode", None),
    ("plan", None),
    ("numberOfUsers", "number"),
    ("parentGroupId", None),
    ("createDate", "timestamp"),
    ("lastModifiedDate", "timestamp"),
    ("lastSeenDate", "timestamp"),
)


def _trait_names(*tables):
    return frozenset(name for table in tables for f in table for name in f.traits)


# Trait names the default-attribute tables consume: a custom attribute map entry keyed by one of
# these is ignored when the config is loaded (MAPPING.md "identify", Custom attributes).
USER_DEFAULT_TRAITS = _trait_names(USER_FIELDS, NAME_FIELDS, LOCATION_FIELDS, COORDINATE_FIELDS) | {
    FULL_NAME_TRAIT
}
ACCOUNT_DEFAULT_TRAITS = _trait_names(ACCOUNT_FIELDS, LOCATION_FIELDS, COORDINATE_FIELDS)

# MAPPING.md "Reading a value": user id paths, first usable wins
USER_ID_PATHS = (
    ("userId",),
    ("traits", "userId"),
    ("traits", "id"),
    ("context", "traits", "userId"),
    ("context", "traits", "id"),
    ("anonymousId",),
)
# for group events `traits` describe the account, so they are not read for the user id
GROUP_USER_ID_PATHS = (
    ("userId",),
    ("context", "traits", "userId"),
    ("context", "traits", "id"),
    ("anonymousId",),
)
GROUP_ID_PATHS = (("groupId",), ("traits", "groupId"))

# MAPPING.md "Which events are sent at all"
SENT_TYPES = frozenset({"identify", "group", "track"})  # Mapper has a handler for each
SKIPPED_TYPES = frozenset({"page", "screen", "alias"})
PX_INTEGRATION_NAMES = (
    "GAINSIGHT_PX",
    "GAINSIGHTPX",
    "gainsightPx",
    "Gainsight PX",
    "gainsight px",
    "Gainsight Px",
)
