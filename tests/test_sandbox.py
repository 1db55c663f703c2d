"""Behaviour of the Gainsight PX stand-in itself (MAPPING.md "Gainsight PX REST API")."""

import io
import threading
import time

import pytest
import requests

from gspx_cli.sandbox import DROP, FakePX, SandboxServer, serve

KEY = {"X-APTRINSIC-API-KEY": "k-1"}
T = 5  # seconds: every request in these tests is bounded


@pytest.fixture
def http():
    with requests.Session() as s:
        s.headers.update(KEY)
        yield s


def test_get_user_is_404_until_post_creates_it(px_server, http):
    url = px_server.base_url
    r = http.get(f"{url}/users/u1", timeout=T)
    assert r.status_code == 404
    assert "not found" in r.json()["externalapierror"]["message"]
    assert r.json()["externalapierror"]["status"] == "NOT_FOUND"  # PX's body names the status
    r = http.post(f"{url}/users", json={"identifyId": "u1", "email": "a@x"}, timeout=T)
    assert r.status_code == 201
    r = http.get(f"{url}/users/u1", timeout=T)
    assert r.status_code == 200 and r.json()["email"] == "a@x"
    assert px_server.px.users == {"u1": {"identifyId": "u1", "email": "a@x"}}


def test_duplicate_create_is_400_possible_duplicate_as_px_documents_or_409_on_request(px_server, http):
    url = px_server.base_url
    assert http.post(f"{url}/users", json={"identifyId": "u1"}, timeout=T).status_code == 201
    r = http.post(f"{url}/users", json={"identifyId": "u1"}, timeout=T)
    assert r.status_code == 400  # PX's published reference, v0.1.6
    assert r.json()["externalapierror"]["message"] == "Bad request, possible duplicate"
    assert http.post(f"{url}/accounts", json={"id": "g1", "name": "G"}, timeout=T).status_code == 201
    assert http.post(f"{url}/accounts", json={"id": "g1", "name": "G"}, timeout=T).status_code == 400
    px_server.px.duplicate_status = 409  # older stand-ins
    r = http.post(f"{url}/accounts", json={"id": "g1", "name": "G"}, timeout=T)
    assert r.status_code == 409 and "already exists" in r.json()["externalapierror"]["message"]


def test_put_merges_into_existing_and_is_404_when_unknown(px_server, http):
    url = px_server.base_url
    r = http.put(f"{url}/users/nobody", json={"email": "x"}, timeout=T)
    assert r.status_code == 404
    assert r.json()["externalapierror"]["message"] == "User with identifyId 'nobody' not found"
    http.post(f"{url}/users", json={"identifyId": "u1", "email": "a", "role": "r"}, timeout=T)
    r = http.put(f"{url}/users/u1", json={"email": "b", "accountId": "g1"}, timeout=T)
    assert r.status_code == 204 and r.content == b""  # PX answers an update with no content
    assert px_server.px.users["u1"] == {"identifyId": "u1", "email": "b", "role": "r", "accountId": "g1"}
    http.post(f"{url}/accounts", json={"id": "g1", "name": "A"}, timeout=T)
    http.put(f"{url}/accounts/g1", json={"plan": "pro"}, timeout=T)
    assert px_server.px.accounts["g1"] == {"id": "g1", "name": "A", "plan": "pro"}
    assert http.put(f"{url}/accounts/g2", json={}, timeout=T).status_code == 404


def test_percent_encoded_id_is_one_decoded_segment(px_server, http):
    url = px_server.base_url
    http.post(f"{url}/users", json={"identifyId": "a/b c"}, timeout=T)
    r = http.get(f"{url}/users/a%2Fb%20c", timeout=T)
    assert r.status_code == 200 and r.json()["identifyId"] == "a/b c"
    assert px_server.px.requests[-1].id == "a/b c"
    assert px_server.px.requests[-1].path == "/v1/users/a%2Fb%20c"


def test_custom_event_needs_identify_id_and_event_name(px_server, http):
    url = px_server.base_url
    ev = {"identifyId": "u1", "eventName": "Bought", "attributes": {}}
    assert http.post(f"{url}/events/custom", json=ev, timeout=T).status_code in (200, 201)
    r = http.post(f"{url}/events/custom", json={"identifyId": "u1"}, timeout=T)
    assert r.status_code == 400 and "eventName" in r.json()["externalapierror"]["message"]
    assert px_server.px.events == [ev]


def test_bad_json_unknown_path_and_missing_identify_id(px_server, http):
    url = px_server.base_url
    r = http.post(f"{url}/users", data=b"{nope", timeout=T)
    assert r.status_code == 400 and "externalapierror" in r.json()
    assert http.post(f"{url}/users", json={"email": "x"}, timeout=T).status_code == 400
    r = http.get(f"{url}/nothing/here", timeout=T)
    assert r.status_code == 404 and r.headers["Content-Type"] == "application/json"


def test_wrong_or_missing_key_is_401_with_px_body(px_server, http):
    px_server.px.api_key = "right"
    r = http.get(f"{px_server.base_url}/users/u1", headers={"X-APTRINSIC-API-KEY": "wrong"}, timeout=T)
    assert r.status_code == 401
    assert r.json()["externalapierror"]["status"] == "UNAUTHORIZED"
    assert requests.get(f"{px_server.base_url}/users/u1", timeout=T).status_code == 401
    ok = http.get(f"{px_server.base_url}/users/u1", headers={"X-APTRINSIC-API-KEY": "right"}, timeout=T)
    assert ok.status_code == 404


def test_any_nonempty_key_is_accepted_by_default(px_server):
    r = requests.get(f"{px_server.base_url}/users/u1", headers={"X-APTRINSIC-API-KEY": "zz"}, timeout=T)
    assert r.status_code == 404


def test_forbid_answers_403_to_everything(px_server, http):
    px_server.px.forbid = True
    r = http.post(f"{px_server.base_url}/users", json={"identifyId": "u1"}, timeout=T)
    assert r.status_code == 403 and "externalapierror" in r.json()
    assert px_server.px.users == {}


def test_fail_first_counts_each_distinct_request_separately(px_server, http):
    px = px_server.px
    px.fail_first, px.retry_after = 2, "1"
    url = px_server.base_url
    statuses = [http.post(f"{url}/users", json={"identifyId": "u1"}, timeout=T).status_code for _ in range(3)]
    assert statuses == [503, 503, 201]
    # a different body is a different request: it fails twice on its own
    r = http.post(f"{url}/users", json={"identifyId": "u2"}, timeout=T)
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    assert [r.attempt for r in px.requests] == [1, 2, 3, 1]
    assert list(px.users) == ["u1"]


def test_fail_status_429_with_http_date_retry_after(px_server, http):
    px = px_server.px
    px.fail_first, px.fail_status = 1, 429
    px.retry_after = "Wed, 21 Oct 2015 07:28:00 GMT"
    r = http.get(f"{px_server.base_url}/users/u1", timeout=T)
    assert r.status_code == 429 and r.headers["Retry-After"] == px.retry_after
    assert http.get(f"{px_server.base_url}/users/u1", timeout=T).status_code == 404


def test_drop_first_closes_connection_then_succeeds(px_server, http):
    px_server.px.drop_first = 1
    url = f"{px_server.base_url}/users"
    with pytest.raises(requests.ConnectionError):
        http.post(url, json={"identifyId": "u1"}, timeout=T)
    assert http.post(url, json={"identifyId": "u1"}, timeout=T).status_code == 201
    assert [r.status for r in px_server.px.requests] == [0, 201]


def test_latency_is_added_to_every_answer(px_server, http):
    px_server.px.latency = 0.2
    start = time.monotonic()
    http.get(f"{px_server.base_url}/users/u1", timeout=T)
    assert 0.18 <= time.monotonic() - start < 3


def test_session_reuses_one_keep_alive_connection(px_server, http):
    for _ in range(3):
        r = http.get(f"{px_server.base_url}/users/u1", timeout=T)
        assert r.headers.get("Connection", "").lower() != "close"
    pool = next(iter(http.adapters["http://"].poolmanager.pools._container.values()))
    assert pool.num_connections == 1


def test_records_and_summary_count_everything(px_server, http):
    url = px_server.base_url
    http.get(f"{url}/users/u1", timeout=T)
    http.post(f"{url}/users", json={"identifyId": "u1"}, timeout=T)
    http.post(f"{url}/accounts", json={"id": "g1"}, timeout=T)
    http.post(f"{url}/events/custom", json={"identifyId": "u1", "eventName": "e"}, timeout=T)
    recs = px_server.px.requests
    assert [(r.method, r.status) for r in recs] == [("GET", 404), ("POST", 201), ("POST", 201), ("POST", 201)]
    assert recs[1].body == {"identifyId": "u1"} and recs[0].body is None and recs[0].id == "u1"
    assert all(isinstance(r.t, float) for r in recs)
    s = px_server.px.summary()
    assert (s["users"], s["accounts"], s["custom_events"], s["requests"]) == (1, 1, 1, 4)
    assert s["by_status"] == {201: 3, 404: 1}
    assert s["by_endpoint"] == {"GET /users/{id}": 1, "POST /users": 1, "POST /accounts": 1,
                                "POST /events/custom": 1}


def test_reset_faults_turns_failures_off():
    px = FakePX(fail_first=5, drop_first=1, forbid=True, latency=1.0)
    px.reset_faults()
    reply = px.handle("GET", "/v1/users/x", KEY, b"")
    assert reply is not DROP and reply.status == 404


def test_fail_rate_is_reproducible_with_seed():
    def statuses(seed):
        px = FakePX(fail_rate=0.5, seed=seed)
        return [px.handle("GET", f"/v1/users/u{i}", KEY, b"").status for i in range(40)]

    a = statuses(7)
    assert a == statuses(7) and 503 in a and 404 in a


def test_stop_is_prompt_even_with_an_open_keep_alive_connection():
    server = SandboxServer().start()
    with requests.Session() as s:
        s.get(f"{server.base_url}/users/u1", headers=KEY, timeout=T)
        start = time.monotonic()
        server.stop()
        assert time.monotonic() - start < 3
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.base_url}/users/u1", headers=KEY, timeout=T)


def test_serve_prints_base_url_then_summary():
    out, stop = io.StringIO(), threading.Event()
    th = threading.Thread(target=serve, kwargs=dict(port=0, out=out, stop_event=stop), daemon=True)
    th.start()
    deadline = time.monotonic() + 5
    while "http://127.0.0.1:" not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.02)
    base = out.getvalue().split("listening on ", 1)[1].split()[0]
    requests.post(f"{base}/users", json={"identifyId": "u1"}, headers=KEY, timeout=T)
    stop.set()
    th.join(5)
    assert not th.is_alive()
    assert "1 users" in out.getvalue() and "201: 1" in out.getvalue()


def test_responses_adapter_drives_the_same_state_machine(fake_px):
    px, base = fake_px
    px.drop_first = 1
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/users/a%2Fb%20c", headers=KEY, timeout=T)
    assert requests.get(f"{base}/users/a%2Fb%20c", headers=KEY, timeout=T).status_code == 404
    px.reset_faults()
    assert requests.post(f"{base}/users", json={"identifyId": "a/b c"}, headers=KEY, timeout=T).status_code == 201
    r = requests.put(f"{base}/users/a%2Fb%20c", json={"email": "e"}, headers=KEY, timeout=T)
    assert r.status_code == 204 and px.users["a/b c"]["email"] == "e"
    r = requests.post(f"{base}/users", json={"identifyId": "a/b c"}, headers=KEY, timeout=T)
    assert r.status_code == 400 and "possible duplicate" in r.json()["externalapierror"]["message"]
    assert requests.get(f"{base}/users/x", timeout=T).status_code == 401
    assert [q.id for q in px.requests][:2] == ["a/b c", "a/b c"]


def test_an_outage_window_answers_every_request_with_its_status_then_ends(px_server, http):
    px, url = px_server.px, px_server.base_url
    px.outage(0.3, status=429, retry_after="120", after=0.1)
    assert http.get(f"{url}/users/u1", timeout=T).status_code == 404  # not yet
    time.sleep(0.15)
    r = http.post(f"{url}/users", json={"identifyId": "u1"}, timeout=T)
    assert r.status_code == 429 and r.headers["Retry-After"] == "120" and px.users == {}  # nothing applied
    assert http.get(f"{url}/nowhere", headers={"X-APTRINSIC-API-KEY": ""}, timeout=T).status_code == 429
    time.sleep(0.3)
    assert http.post(f"{url}/users", json={"identifyId": "u1"}, timeout=T).status_code == 201
    px.outage()  # no length: until end_outage()
    assert http.get(f"{url}/users/u1", timeout=T).status_code == 503
    px.end_outage()
    assert http.get(f"{url}/users/u1", timeout=T).status_code == 200


def test_serve_with_an_outage_says_so_and_answers_503_meanwhile():
    out, stop = io.StringIO(), threading.Event()
    th = threading.Thread(target=serve, kwargs=dict(port=0, out=out, stop_event=stop, outage_after=0,
                                                    outage_for=30), daemon=True)
    th.start()
    deadline = time.monotonic() + 5
    while "Ctrl-C" not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.02)
    base = out.getvalue().split("listening on ", 1)[1].split()[0]
    assert requests.get(f"{base}/users/u1", headers=KEY, timeout=T).status_code == 503
    stop.set()
    th.join(5)
    assert "outage: every request answered 503 from 0 s after start, for 30 s" in out.getvalue()


@pytest.mark.parametrize("mode, recorded", [("abrupt", [204, 204, 0]), ("silent", [204, 204])])
def test_close_after_ends_each_connection_after_its_nth_request_abruptly_or_silently(px_server, mode, recorded):
    import http.client

    px = px_server.px
    px.users["u1"] = {"identifyId": "u1"}
    px.close_after, px.close_mode = 2, mode
    conn = http.client.HTTPConnection("127.0.0.1", px_server.port, timeout=T)
    try:
        for _ in range(2):
            conn.request("PUT", "/v1/users/u1", body=b'{"a": 1}', headers={**KEY, "Content-Type": "application/json"})
            assert conn.getresponse().read() == b""
        time.sleep(0.1)  # a silent close lands before the next request is written, as a keep-alive timeout's does
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            conn.request("PUT", "/v1/users/u1", body=b'{"a": 2}', headers={**KEY, "Content-Type": "application/json"})
            conn.getresponse()
    finally:
        conn.close()
    assert [r.status for r in px.requests] == recorded  # abrupt: read, then dropped unanswered and unapplied
    assert px.users["u1"]["a"] == 1


def test_fail_always_refuses_only_requests_whose_body_holds_the_text(px_server, http):
    px_server.px.fail_always("Doomed", 502)
    url = f"{px_server.base_url}/events/custom"
    for _ in range(3):
        r = http.post(url, json={"identifyId": "u", "eventName": "Doomed"}, timeout=T)
        assert r.status_code == 502 and r.headers["Content-Type"] == "text/html"
    assert http.post(url, json={"identifyId": "u", "eventName": "Fine"}, timeout=T).status_code == 201
