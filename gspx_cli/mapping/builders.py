"""The per-type builders (MAPPING.md "identify", "group", "track"): one event of that type -> a Plan or Invalid.

Each is made once per run from the Settings (its field table flattened with the attribute map, its
paths and flags bound), so mapping an event is one pass over what it holds.
"""

from gspx_cli.mapping import fields
from gspx_cli.mapping.convert import INT64_MAX, INT64_MIN, has_non_finite, iso_ms, plain, show, to_str
from gspx_cli.mapping.plan import (CUSTOM_EVENTS_PATH, Invalid, Plan, RequireUser, Update, Upsert, Write,
                                   custom_event_plan)
from gspx_cli.mapping.reading import (BODY, COORDINATES, DOT_SEGMENTS, EMPTY, FULL_NAME, LOCATION, NO_WARNINGS,
                                      attributes, check_id, collect_common, event_name, event_time, finish,
                                      first_of, first_trait, key_paths, split_name,
                                      trait_table, user_id_of)
from gspx_cli.mapping.traitshapes import Shapes

_new = object.__new__  # a Plan and its steps made with their slots set in place (tests pin them)
_LOCATION_TABLES = ((LOCATION, fields.LOCATION_FIELDS), (COORDINATES, fields.COORDINATE_FIELDS))


class _Shaped:
    """A builder whose usual bodies are made by code made once per trait-name shape (traitshapes.py)."""

    _shapes = None

    def general(self, event, event_type, options):
        """The Plan the general way alone (trait by trait), which the shape's way must equal (tests)."""
        shapes, self._shapes = self._shapes, None
        try:
            return self(event, event_type, options)
        finally:
            self._shapes = shapes


class IdentifyBuilder(_Shaped):
    """identify -> create or update a PX User."""

    def __init__(self, settings):
        self._key = settings.product_tag_key
        self._create_first = settings.delivery.upsert == "create-first"
        self._traits = trait_table(((BODY, fields.USER_FIELDS), *_LOCATION_TABLES),
                                   settings.user_attribute_map, fields.USER_DEFAULT_TRAITS)
        # names are read alias by alias, all of `traits` before `context.traits`
        self._names = tuple((f.px, f.traits[0], f.traits) for f in fields.NAME_FIELDS)
        self._user_id_paths = key_paths(*fields.USER_ID_PATHS)
        # the usual identify's body made by code made once per trait-name shape; None: the general way only
        self._shapes = Shapes(self._traits, tuple(px for px, _, _ in self._names),
                              f"'type': 'USER', 'propertyKeys': [{self._key!r}]")

    def __call__(self, event, event_type, options):
        user_id = event.get("userId")  # user_id_of()'s common case, decided as it does, without its call
        if not (user_id.__class__ is str and user_id and user_id.isprintable() and user_id not in DOT_SEGMENTS):
            user_id, problem = user_id_of(event, self._user_id_paths, event_type)
            if problem:
                return Invalid(problem, event_type)
        warnings = []
        traits = event.get("traits")  # trait_sources(), inlined: once per identify
        if traits.__class__ is not dict and not isinstance(traits, dict):  # the class first: no call
            traits = EMPTY
        context = event.get("context")
        ctx_traits = (context.get("traits") if context.__class__ is dict or isinstance(context, dict)
                      else None)
        if ctx_traits is None or (ctx_traits.__class__ is not dict and not isinstance(ctx_traits, dict)):
            ctx_traits = EMPTY
        body = None
        if not ctx_traits and self._shapes is not None:
            body = self._shapes.body(traits, warnings)
            if body is None:
                warnings = []  # the general way warns again, from the start
        if body is None:
            body = self._body(traits, ctx_traits, warnings)

        create = {"identifyId": user_id, **body}
        if "signUpDate" not in body or "createDate" not in body:
            when = event.get("timestamp")  # event_time()'s first reading, without its calls
            when = iso_ms(when) if when.__class__ is str else None
            if when is None:
                when = event_time(event, warnings)
            if when is not None:
                create.setdefault("signUpDate", when)
                create.setdefault("createDate", when)
        # Plan(event_type, user_id, (Upsert("user", user_id, body, create, None, create_first),), warnings,
        # message_id), its slots set in place as plan.custom_event_plan() sets a track's (~1,000 instructions
        # of the constructors' calls; tests/test_plan_values.py pins it to them slot for slot)
        upsert = _new(Upsert)
        upsert.kind, upsert.id, upsert.update_body, upsert.create_body = "user", user_id, body, create
        upsert.create_error, upsert.create_first = None, self._create_first
        message = event.get("messageId")  # message_id(), inlined
        plan = _new(Plan)
        plan.type, plan.user_id, plan.steps = event_type, user_id, (upsert,)
        plan.warnings = tuple(warnings) if warnings else NO_WARNINGS
        plan.message_id = message if message.__class__ is str and message else None
        return plan

    def _body(self, traits, ctx_traits, warnings):
        """The user's body, trait by trait."""
        body, location, coordinates, custom = slots = ({}, {}, {}, {})
        collect_common(self._traits, traits, ctx_traits, slots, warnings)
        for px, first, aliases in self._names:
            value = traits.get(first)  # most often there: the first alias in `traits` wins at once
            if value.__class__ is str and value:
                body[px] = value
                continue
            if value is None or value == "":
                value = first_trait(aliases, traits, ctx_traits)
            if value is not None and value.__class__ is not str:
                value = plain(value, px, warnings)
            if value is not None:
                body[px] = value
        if "firstName" not in body or "lastName" not in body:
            split_name(body, first_trait(FULL_NAME, traits, ctx_traits))
        if coordinates or location or custom:
            finish(body, location, coordinates, custom)
        body["type"] = "USER"
        body["propertyKeys"] = [self._key]
        return body


class GroupBuilder(_Shaped):
    """group -> create or update a PX Account, then attach the user."""

    def __init__(self, settings):
        self._key = settings.product_tag_key
        self._create_first = settings.delivery.upsert == "create-first"
        self._limit_api = bool(settings.limit_api_for_group)
        # MAPPING.md "group": account attributes come from the group's `traits` only
        self._traits = trait_table(((BODY, fields.ACCOUNT_FIELDS), *_LOCATION_TABLES),
                                   settings.account_attribute_map, fields.ACCOUNT_DEFAULT_TRAITS)
        # for group events `traits` describe the account, so they are not read for the user id
        self._user_id_paths = key_paths(*fields.GROUP_USER_ID_PATHS)
        self._group_id_paths = key_paths(*fields.GROUP_ID_PATHS)
        # the usual group's body made by code made once per trait-name shape; None: the general way only
        self._shapes = Shapes(self._traits, (), f"'propertyKeys': [{self._key!r}]")

    def __call__(self, event, event_type, options):
        user_id = event.get("userId")  # user_id_of()'s common case, decided as it does, without its call
        if not (user_id.__class__ is str and user_id and user_id.isprintable() and user_id not in DOT_SEGMENTS):
            user_id, problem = user_id_of(event, self._user_id_paths, event_type)
            if problem:
                return Invalid(problem, event_type)
        group_id = event.get("groupId")
        # the common case decided as user_id_of() does; isprintable() is false for every control char
        if not (group_id.__class__ is str and group_id and group_id.isprintable()
                and group_id not in DOT_SEGMENTS):
            value, label = first_of(event, self._group_id_paths)
            if value is None:
                return Invalid("groupId is required for group", event_type)
            group_id, problem = check_id(value, label)
            if problem:
                return Invalid(problem, event_type)

        warnings = []
        traits = event.get("traits")  # trait_sources(), inlined: a group reads `traits` alone
        if traits.__class__ is not dict and not isinstance(traits, dict):  # the class first: no call
            traits = EMPTY
        body = None if self._shapes is None else self._shapes.body(traits, warnings)
        if body is None:
            warnings = []  # the general way warns again, from the start
            body, location, coordinates, custom = slots = ({}, {}, {}, {})
            collect_common(self._traits, traits, EMPTY, slots, warnings)
            if coordinates or location or custom:
                finish(body, location, coordinates, custom)
            body["propertyKeys"] = [self._key]

        create, create_error = None, None
        if "name" in body:
            create = {"id": group_id, **body}
            if "createDate" not in body:  # only a create gets the event time (MAPPING.md)
                when = event_time(event, warnings)
                if when is not None:
                    create["createDate"] = when
        else:
            create_error = (
                f"account {group_id!r} does not exist and cannot be created without a name "
                "(traits.name)"
            )

        limit = self._limit_api
        if options is not None:
            option_name, option_values = options
            flag = option_values.get("limitAPIForGroup")
            if flag is True:
                limit = True
            elif flag is not None and flag is not False:
                # MAPPING.md "group": only the boolean true counts; "true", 1, "yes" do not
                warnings.append(
                    f"integrations.{option_name}.limitAPIForGroup: {show(flag)} is not a JSON boolean "
                    "(only true turns the fewer-calls flow on); ignored"
                )
        # the steps and Plan as the constructors make them (see IdentifyBuilder; ~2,000 instructions a group)
        upsert = _new(Upsert)
        upsert.kind, upsert.id, upsert.update_body, upsert.create_body = "account", group_id, body, create
        upsert.create_error, upsert.create_first = create_error, self._create_first
        attach = _new(Update)
        attach.kind, attach.id, attach.body = "user", user_id, {"accountId": group_id}
        if limit:
            steps = (upsert, attach)
        else:
            require = _new(RequireUser)
            require.user_id = user_id
            steps = (require, upsert, attach)
        message = event.get("messageId")  # message_id(), inlined
        plan = _new(Plan)
        plan.type, plan.user_id, plan.steps = event_type, user_id, steps
        plan.warnings = tuple(warnings) if warnings else NO_WARNINGS
        plan.message_id = message if message.__class__ is str and message else None
        return plan


class TrackBuilder:
    """track -> one PX custom event."""

    def __init__(self, settings):
        self._key = settings.product_tag_key
        self._global_context = settings.global_context or None
        self._user_id_paths = key_paths(*fields.USER_ID_PATHS)

    def __call__(self, event, event_type, options):
        """The usual track, read in one pass: a plain userId and event name, properties and context as
        objects, an ISO `timestamp`, no properties.date or properties.globalContext, no top-level traits.
        Anything else, and any value that needs a conversion or a warning, is mapped by general(),
        which gives the same Plan for these (tests/test_track_fast.py pins it)."""
        user_id = event.get("userId")
        name = event.get("event")
        properties = event.get("properties")
        context = event.get("context")
        stamp = event.get("timestamp")
        if user_id.__class__ is not str or name.__class__ is not str or properties.__class__ is not dict \
                or context.__class__ is not dict or stamp.__class__ is not str or not user_id or not name \
                or "date" in properties or "globalContext" in properties or "traits" in event \
                or not user_id.isprintable() or user_id in DOT_SEGMENTS:
            return self.general(event, event_type, options)
        date = iso_ms(stamp)
        if date is None:
            return self.general(event, event_type, options)
        ctx_traits = context.get("traits")
        if ctx_traits.__class__ is dict:
            account = ctx_traits.get("groupId")
            if account.__class__ is not str and account is not None:
                return self.general(event, event_type, options)
        elif ctx_traits is None:
            account = None
        else:
            return self.general(event, event_type, options)
        session = properties.get("sessionId")
        if session is None or session == "":
            session = context.get("sessionId")
        if session is not None:
            cls = session.__class__
            if not (cls is str or (cls is int and INT64_MIN <= session <= INT64_MAX)):
                return self.general(event, event_type, options)
        page = context.get("page")
        if page.__class__ is dict:
            url = page.get("url")
            referrer = page.get("referrer")
            if (url.__class__ is not str and url is not None) or (
                    referrer.__class__ is not str and referrer is not None):
                return self.general(event, event_type, options)
        elif page is None:
            url = referrer = None
        else:
            return self.general(event, event_type, options)
        warnings = []  # attributes() may still warn (a non-finite number inside, too many of them)
        # every key at once (one allocation, no resize), in the body's order; those without a value go
        body = {"identifyId": user_id, "eventName": name, "date": date, "accountId": account, "sessionId": session,
                "url": url, "referrer": referrer,
                "attributes": attributes(properties, warnings) if properties else {}, "propertyKey": self._key,
                "userType": "USER", "globalContext": self._global_context}
        if not account:
            del body["accountId"]
        if session is None or session == "":
            del body["sessionId"]
        if not url:
            del body["url"]
        if not referrer:
            del body["referrer"]
        if not self._global_context:
            del body["globalContext"]
        message = event.get("messageId")
        return custom_event_plan(event_type, user_id, body, tuple(warnings) if warnings else NO_WARNINGS,
                                 message if message.__class__ is str and message else None)

    def general(self, event, event_type, options):
        """Any track event, each value read and converted as MAPPING.md "track" says."""
        user_id, problem = user_id_of(event, self._user_id_paths, event_type)
        if problem:
            return Invalid(problem, event_type)
        name = event.get("event")
        if name.__class__ is not str or not name:
            name, problem = event_name(name)
            if problem:
                return Invalid(problem, event_type)

        warnings = []
        properties = event.get("properties")
        if properties is None:
            properties = EMPTY
        elif not isinstance(properties, dict):
            warnings.append(f"properties: not an object ({show(properties)}); ignored")
            properties = EMPTY
        context = event.get("context")
        if not isinstance(context, dict):
            context = EMPTY

        body = {"identifyId": user_id, "eventName": name}
        date = event_time(event, warnings, properties.get("date"))
        if date is not None:
            body["date"] = date
        value = None  # accountId: traits.groupId, else context.traits.groupId (first_trait, inlined)
        traits = event.get("traits")
        if isinstance(traits, dict):
            value = traits.get("groupId")
            if value == "":
                value = None
        else:
            traits = EMPTY
        if value is None:
            ctx_traits = context.get("traits")
            if isinstance(ctx_traits, dict):
                value = ctx_traits.get("groupId")
                if value == "":
                    value = None
        if value is not None:
            if value.__class__ is not str:
                label = "traits.groupId" if traits.get("groupId") is value else "context.traits.groupId"
                value = to_str(value, label, warnings)
            if value is not None:
                body["accountId"] = value
        value = properties.get("sessionId")
        label = "properties.sessionId"
        if value is None or value == "":
            value = context.get("sessionId")
            label = "context.sessionId"
        if value is not None and value != "":
            cls = value.__class__
            # what plain() passes unchanged, decided without a call: text, or an int PX can hold
            if not (cls is str or (cls is int and INT64_MIN <= value <= INT64_MAX)):
                value = plain(value, label, warnings)
            if value is not None:
                body["sessionId"] = value
        page = context.get("page")
        if page and isinstance(page, dict):
            value = page.get("url")
            if value is not None and value != "":
                if value.__class__ is not str:  # a URL is text: no label built for plain
                    value = plain(value, "context.page.url", warnings)
                if value is not None:
                    body["url"] = value
            value = page.get("referrer")
            if value is not None and value != "":
                if value.__class__ is not str:
                    value = plain(value, "context.page.referrer", warnings)
                if value is not None:
                    body["referrer"] = value
        body["attributes"] = attributes(properties, warnings) if properties else {}
        body["propertyKey"] = self._key
        body["userType"] = "USER"
        global_context = self._global_context_of(properties, warnings) if properties else self._global_context
        if global_context:
            body["globalContext"] = global_context
        message = event.get("messageId")  # message_id(), inlined
        return Plan(event_type, user_id, (Write("POST", CUSTOM_EVENTS_PATH, body),),
                    tuple(warnings) if warnings else NO_WARNINGS,
                    message if message.__class__ is str and message else None)

    def _global_context_of(self, properties, warnings):
        # MAPPING.md: a non-empty properties.globalContext wins over the configured one
        value = properties.get("globalContext")
        if value:
            if isinstance(value, dict):
                if not has_non_finite(value):
                    return value
                warnings.append(
                    "properties.globalContext: holds a number that is not finite; "
                    "the configured global context is used"
                )
            else:
                warnings.append(
                    f"properties.globalContext: not an object ({show(value)}); "
                    "the configured global context is used"
                )
        return self._global_context
