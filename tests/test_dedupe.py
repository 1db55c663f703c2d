"""The run's messageId memory without a checkpoint (CLI.md "The checkpoint"): the most recent `limit`
ids, the first place of each, in flat memory; and a dry run's duplicates named with that place."""

import json
import random
from collections import OrderedDict

from e2e import gspx, write_config, write_events
from gspx_cli.state.dedupe import RunMemory


class _Reference:
    """The semantics, spelt plainly: an ordered dict of the most recent `limit` ids."""

    def __init__(self, limit):
        self.seen, self.limit = OrderedDict(), limit

    def first_or_add(self, message_id, source, line_no):
        if message_id in self.seen:
            return self.seen[message_id]
        self.seen[message_id] = f"{source}:{line_no}"
        if len(self.seen) > self.limit:
            self.seen.popitem(last=False)
        return None


def test_at_the_limit_every_id_is_remembered_and_one_more_forgets_only_the_oldest():
    memory = RunMemory(limit=1000)
    for n in range(1000):
        assert memory.first_or_add(f"m-{n}", "in.ndjson", n + 1) is None
    assert len(memory) == 1000
    assert all(memory.delivered_at(f"m-{n}") == f"in.ndjson:{n + 1}" for n in range(1000))
    memory.add("m-1000", "in.ndjson", 1001)
    assert memory.delivered_at("m-0") is None
    assert memory.delivered_at("m-1") == "in.ndjson:2" and memory.delivered_at("m-1000") == "in.ndjson:1001"


def test_a_repeated_id_keeps_its_first_place_and_takes_no_room():
    memory = RunMemory(limit=3)
    for n in range(3):
        memory.add(f"m-{n}", "a.ndjson", n + 1)
    assert memory.first_or_add("m-0", "b.ndjson", 9) == "a.ndjson:1"  # the first place, not the repeat's
    memory.add("m-1", "b.ndjson", 10)
    assert len(memory) == 3 and memory.delivered_at("m-0") == "a.ndjson:1"


def test_far_past_the_limit_it_remembers_exactly_the_most_recent_ids_with_their_first_places():
    rng = random.Random(22)
    for limit in (1, 7, 500):
        memory, reference = RunMemory(limit=limit), _Reference(limit)
        for n in range(6000):  # ids repeat at random distances, inside and outside the window
            message_id = f"m-{rng.randrange(1500)}"
            source = f"part-{n // 100}.ndjson"
            assert memory.first_or_add(message_id, source, n + 1) == reference.first_or_add(message_id, source, n + 1)
        assert [memory.delivered_at(f"m-{k}") for k in range(1500)] == \
            [reference.seen.get(f"m-{k}") for k in range(1500)]


def test_the_names_of_inputs_are_kept_only_while_an_id_of_theirs_is_remembered():
    memory = RunMemory(limit=100)
    for n in range(5000):  # a walk over 5,000 one-event files
        memory.add(f"m-{n}", f"day/file-{n}.ndjson", 1)
    assert len(memory._sources) == len(memory._numbers) == 100
    assert memory.delivered_at("m-4999") == "day/file-4999.ndjson:1" and memory.delivered_at("m-4899") is None


def test_the_memory_holds_about_22_bytes_an_id():
    memory = RunMemory(limit=20_000)
    for n in range(20_000):
        memory.add(f"{n:08x}-0000-4000-8000-000000000000", "in.ndjson", n)
    arrays = memory._keys.nbytes + memory._places.nbytes
    table = memory._slots.nbytes
    assert (arrays + table) / 20_000 <= 23


def test_ids_of_either_hash_sign_keep_a_40_bit_line_number_through_the_ring_and_its_wrap():
    ids = [f"id-{n}" for n in range(40)]
    assert {hash(i) < 0 for i in ids} == {True, False}  # both signs are stored in the ring's keys
    memory, reference = RunMemory(limit=25), _Reference(25)
    for n, message_id in enumerate(ids + ids[::-1]):  # the second pass wraps the ring
        line = (1 << 40) - 1 - n  # the largest lines a place holds
        expected = reference.first_or_add(message_id, "in.ndjson", line)
        assert memory.first_or_add(message_id, "in.ndjson", line) == expected
    assert len(memory) == 25
    assert [memory.delivered_at(i) for i in ids] == [reference.seen.get(i) for i in ids]


def test_a_dry_run_names_the_first_place_of_each_duplicate_across_files(tmp_path):
    cfg = write_config(tmp_path, "http://127.0.0.1:9")  # a dry run connects to nothing
    first = write_events(tmp_path, [{"type": "track", "userId": "u", "event": "E", "messageId": f"m{n}"}
                                    for n in range(3)], name="first.ndjson")
    second = write_events(tmp_path, [{"type": "track", "userId": "u", "event": "E", "messageId": f"m{n}"}
                                     for n in (2, 3, 0)], name="second.ndjson")
    run = gspx("send", "--dry-run", "-c", cfg, first, second, key=None)
    lines = [json.loads(x) for x in run.stdout.splitlines()]
    assert [line.get("skipped") for line in lines] == [
        None, None, None, f"duplicate messageId, first at {first}:3", None, f"duplicate messageId, first at {first}:1"]


def test_an_event_left_out_by_a_filter_is_not_remembered_by_its_messageid(tmp_path):
    cfg = write_config(tmp_path, "http://127.0.0.1:9")
    path = write_events(tmp_path, [{"type": "track", "userId": "u", "event": "E", "messageId": "m1"},
                                   {"type": "identify", "userId": "u", "messageId": "m1"},
                                   {"type": "identify", "userId": "u", "messageId": "m1"}])
    run = gspx("send", "--dry-run", "-c", cfg, "--type", "identify", path, key=None)
    lines = [json.loads(x) for x in run.stdout.splitlines()]
    assert lines[0] == {"input": f"{path}:1", "type": "track", "skipped": "filtered"}
    assert "requests" in lines[1]  # the filtered track before it did not take its messageId
    assert lines[2]["skipped"] == f"duplicate messageId, first at {path}:2"


def test_the_estimate_counts_every_listing_shape_as_walking_its_two_paths_does():
    from collections import Counter

    from gspx_cli.delivery.executor import new_known
    from gspx_cli.mapping.estimate import Estimate
    from gspx_cli.mapping.plan import Plan, RequireUser, Update, Upsert, Write, expand, paths_cost

    body = {"email": "a@b.c"}
    plans = [Plan("track", "u", (Write("POST", "/events/custom", {"x": 1}),))]
    for create_first in (False, True):
        plans.append(Plan("identify", "u", (Upsert("user", "u", body, {"identifyId": "u", **body},
                                                    create_first=create_first),)))
        plans.append(Plan("group", "u", (RequireUser("u"), Upsert("account", "g", {"name": "G"}, None, "no name",
                                                                  create_first=create_first),
                                         Update("user", "u", {"accountId": "g"}))))
    knowns = [new_known(), new_known()]
    knowns[1]["user"].add("u", "")
    knowns[1]["account"].add("g", "")
    for known in knowns:
        for plan in plans:
            calls = expand(plan, known)
            estimate = Estimate()
            estimate.add(calls)
            fewest, most = paths_cost(calls)
            assert (estimate.fewest, estimate.most) == (Counter(fewest), Counter(most)), (plan, calls)


def test_a_memory_of_thousands_far_past_its_limit_remembers_what_the_reference_does():
    rng = random.Random(7)
    limit = 6_000  # the table wraps its probes and shifts entries back many times over
    memory, reference = RunMemory(limit=limit), _Reference(limit)
    for n in range(20_000):
        message_id = f"m-{rng.randrange(9_000)}"
        source = f"part-{n // 1000}.ndjson"
        assert memory.first_or_add(message_id, source, n + 1) == reference.first_or_add(message_id, source, n + 1)
    assert len(memory) == limit
    assert [memory.delivered_at(f"m-{k}") for k in range(9_000)] == [reference.seen.get(f"m-{k}") for k in range(9_000)]
