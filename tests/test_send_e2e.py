"""`gspx send` end to end against the stand-in PX server on 127.0.0.1."""

import pytest

from e2e import TAG, gspx, write_config, write_events, writes

IDENTIFY = {"type": "identify", "userId": "u1", "traits": {"email": "a@b.c", "name": "Ada Love Lace",
                                                          "hobbyCustomField": "chess", "dropMe": 1},
            "timestamp": "2020-01-01T00:00:00Z"}
GROUP = {"type": "group", "userId": "u1", "groupId": "g1",
         "traits": {"name": "Acme", "cultureCustomField": "cool"}, "timestamp": "2020-01-02T00:00:00Z"}
TRACK = {"type": "track", "userId": "u1", "event": "Clicked", "properties": {"x": 1},
         "timestamp": "2020-01-03T00:00:00Z"}
USER_BODY = {"email": "a@b.c", "firstName": "Ada", "lastName": "Love Lace", "customAttributes": {"hobby": "chess"},
             "type": "USER", "propertyKeys": [TAG]}
ACCOUNT_BODY = {"name": "Acme", "customAttributes": {"culture": "cool"}, "propertyKeys": [TAG]}


@pytest.fixture
def setup(px_server, tmp_path):
    return px_server.px, write_config(tmp_path, px_server.base_url), tmp_path


def test_identify_new_user_posts_with_create_defaults(setup):
    px, cfg, tmp = setup
    run = gspx("send", "-c", cfg, write_events(tmp, [IDENTIFY]))
    assert run.exit_code == 0, run.stderr
    assert writes(px) == [("POST", "/v1/users", {**USER_BODY, "identifyId": "u1",
                                                  "signUpDate": 1577836800000, "createDate": 1577836800000})]
    assert [(r.method, r.status) for r in px.requests] == [("PUT", 404), ("POST", 201)]  # update-first


def test_identify_existing_user_puts_update_body(setup):
    px, cfg, tmp = setup
    px.users["u1"] = {"identifyId": "u1"}
    run = gspx("send", "-c", cfg, write_events(tmp, [IDENTIFY]))
    assert run.exit_code == 0
    assert writes(px) == [("PUT", "/v1/users/u1", USER_BODY)]


def test_group_with_existing_account_updates_it_then_attaches_user(setup):
    px, cfg, tmp = setup
    px.users["u1"] = {"identifyId": "u1"}
    px.accounts["g1"] = {"id": "g1"}
    run = gspx("send", "-c", cfg, write_events(tmp, [GROUP]))
    assert run.exit_code == 0
    assert writes(px) == [("PUT", "/v1/accounts/g1", ACCOUNT_BODY), ("PUT", "/v1/users/u1", {"accountId": "g1"})]
    assert px.users["u1"]["accountId"] == "g1"


def test_group_with_new_account_creates_it_with_id_and_event_time(setup):
    px, cfg, tmp = setup
    px.users["u1"] = {"identifyId": "u1"}
    run = gspx("send", "-c", cfg, write_events(tmp, [GROUP]))
    assert run.exit_code == 0
    assert writes(px) == [
        ("POST", "/v1/accounts", {**ACCOUNT_BODY, "id": "g1", "createDate": 1577923200000}),
        ("PUT", "/v1/users/u1", {"accountId": "g1"})]


def test_group_for_unknown_user_fails_and_sends_no_write(setup):
    px, cfg, tmp = setup
    failed = tmp / "failed.ndjson"
    events = write_events(tmp, [GROUP])
    run = gspx("send", "-c", cfg, "--failed-output", str(failed), events)
    assert run.exit_code == 1
    assert writes(px) == []
    assert "identify for this user must come first" in run.stderr
    assert f"{events}:1" in run.stderr
    assert failed.read_text() == open(events).read()


def test_limit_api_for_group_puts_account_first_and_skips_user_lookup(setup):
    px, cfg, tmp = setup
    px.accounts["g1"] = {"id": "g1"}
    px.users["u1"] = {"identifyId": "u1"}
    run = gspx("send", "-c", cfg, "--limit-api-for-group", write_events(tmp, [GROUP]))
    assert run.exit_code == 0
    assert [(r.method, r.path) for r in px.requests] == [("PUT", "/v1/accounts/g1"), ("PUT", "/v1/users/u1")]


def test_limit_api_for_group_creates_account_when_put_says_missing(setup):
    px, cfg, tmp = setup
    px.users["u1"] = {"identifyId": "u1"}
    event = {**GROUP, "integrations": {"GAINSIGHT_PX": {"limitAPIForGroup": True}}}
    run = gspx("send", "-c", cfg, write_events(tmp, [event]))
    assert run.exit_code == 0
    assert [(r.method, r.path, r.status) for r in px.requests] == [
        ("PUT", "/v1/accounts/g1", 404), ("POST", "/v1/accounts", 201), ("PUT", "/v1/users/u1", 204)]


def test_track_posts_one_custom_event(setup):
    px, cfg, tmp = setup
    run = gspx("send", "-c", cfg, write_events(tmp, [TRACK]))
    assert run.exit_code == 0
    assert writes(px) == [("POST", "/v1/events/custom", {
        "identifyId": "u1", "eventName": "Clicked", "date": 1578009600000, "attributes": {"x": 1},
        "propertyKey": TAG, "userType": "USER", "globalContext": {"projectId": "p-123"}})]
    assert len(px.requests) == 1


def test_mixed_file_identifies_groups_and_tracks_new_user_in_order(setup):
    px, cfg, tmp = setup
    page = {"type": "page", "userId": "u1", "name": "Home"}
    run = gspx("send", "-c", cfg, write_events(tmp, [IDENTIFY, GROUP, TRACK, page]))
    assert run.exit_code == 0, run.stderr
    assert [(m, p) for m, p, _ in writes(px)] == [
        ("POST", "/v1/users"), ("POST", "/v1/accounts"), ("PUT", "/v1/users/u1"), ("POST", "/v1/events/custom")]
    # the user is known after its identify: the group does not look it up (no GET at all: upserts)
    assert [(r.method, r.path) for r in px.requests if r.method == "GET"] == []
    assert "3 delivered" in run.stderr.replace(",", "") or "│        3 │" in run.stderr


def test_bad_lines_are_reported_counted_and_written_to_failed_output(setup):
    px, cfg, tmp = setup
    lines = [IDENTIFY, "not json", '{"type":"track","userId":"u1"}', TRACK,
             '{"batch":[{"type":"track","userId":"u1","event":"A"},{"type":"track","event":"B"}]}']
    events = write_events(tmp, lines)
    failed = tmp / "failed.ndjson"
    report = tmp / "report.json"
    run = gspx("send", "-c", cfg, "--failed-output", str(failed), "--report", str(report), events)
    assert run.exit_code == 1
    assert f"{events}:2: not valid JSON" in run.stderr
    assert f"{events}:3: " in run.stderr and f"{events}:5: " in run.stderr
    # plain lines byte for byte; the batch member alone, not its envelope
    assert failed.read_text().splitlines() == ["not json", '{"type":"track","userId":"u1"}',
                                               '{"type":"track","event":"B"}']
    import json
    data = json.loads(report.read_text())
    assert data["read"] == 6 and data["delivered"] == 3 and data["failed"] == 3
    assert data["read"] == data["delivered"] + data["skipped"] + data["failed"] + data["not_sent"]
    assert len(px.events) == 2


def test_wrong_key_exits_3_naming_the_base_url(setup, px_server):
    px, cfg, tmp = setup
    px.api_key = "the-real-key"
    run = gspx("send", "-c", cfg, write_events(tmp, [TRACK] * 20))
    assert run.exit_code == 3
    assert "API key" in run.stderr and px_server.base_url in run.stderr
    assert len(px.requests) <= 4  # concurrency 4: at most the requests already in flight


def test_stdin_is_read_when_no_file_is_given(setup):
    px, cfg, tmp = setup
    import json
    run = gspx("send", "-c", cfg, input=json.dumps(TRACK) + "\n")
    assert run.exit_code == 0
    assert len(px.events) == 1


def test_dry_run_needs_no_key_and_opens_no_connection(setup):
    px, cfg, tmp = setup
    run = gspx("send", "--dry-run", "-c", cfg, write_events(tmp, [IDENTIFY, TRACK]), key=None)
    assert run.exit_code == 0
    assert px.requests == []
    import json
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [line["type"] for line in lines] == ["identify", "track"]


def test_missing_key_is_a_config_error_exit_2(setup):
    px, cfg, tmp = setup
    run = gspx("send", "-c", cfg, write_events(tmp, [TRACK]), key=None)
    assert run.exit_code == 2
    assert "api_key" in run.stderr
    assert px.requests == []


def test_dry_run_items_are_all_real_requests_even_when_an_account_cannot_be_created(setup):
    px, cfg, tmp = setup
    import json
    nameless = {"type": "group", "userId": "u1", "groupId": "g2", "traits": {"industry": "x"}}
    run = gspx("send", "--dry-run", "-c", cfg, write_events(tmp, [nameless]), key=None)
    (line,) = [json.loads(x) for x in run.stdout.splitlines()]
    assert all({"method", "url"} <= set(item) for item in line["requests"])
    assert all("json" in item for item in line["requests"] if item["method"] != "GET")
    put = next(item for item in line["requests"] if item["method"] == "PUT" and item["url"].endswith("/accounts/g2"))
    assert "when" not in put  # always made: the update; "not found" fails the event (it cannot create)
    assert not any(item["method"] == "POST" for item in line["requests"])
