"""The auth gate over real HTTP: addresses, signatures, legacy tokens, admin, 413, CORS.

The probe app (tests/support/testapp.py) has ``/test/api/*`` (``auth="api"``)
and ``/test/admin/*`` (``auth="admin"``) views that echo what they admitted.
Requests are written with http.client so that each test controls exactly the
method, request target, headers and body bytes that go on the wire.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import time
from collections.abc import Iterator, Mapping

import itsdangerous
import pytest
import requests
from pyramid.config import Configurator
from pyramid.exceptions import ConfigurationExecutionError
from pyramid.request import Request

from channelstream.security.gate import address_allowed, get_replay_cache
from channelstream.security.signing import sign
from channelstream.settings import default_settings
from channelstream.settings.parsers import ip_networks
from channelstream.wsgi_app import build_app
from tests.support.server import PROBE_APP, REPO, RunningServer

#: The secrets of development.ini.
SECRET = "dev-secret-change-me"
ADMIN_SECRET = "dev-admin-secret-change-me"
ALLOWED_ORIGIN = "http://allowed.example"
LIMIT = 1000


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A probe server with a network allow-list, legacy tokens on, a small body limit, CORS."""
    app = {
        **PROBE_APP,
        "allow_posting_from": "10.0.0.0/8, 127.0.0.0/8",
        "legacy_secret_header": "true",
        "max_body_size": str(LIMIT),
        "allow_cors": f"{ALLOWED_ORIGIN}, https://app.example:8443",
    }
    with RunningServer(REPO / "development.ini", tmp_path_factory.mktemp("secured"), app=app) as s:
        yield s


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A probe server that takes server API calls from other addresses only."""
    app = {**PROBE_APP, "allow_posting_from": "10.0.0.0/8, ::1"}
    with RunningServer(REPO / "development.ini", tmp_path_factory.mktemp("strict"), app=app) as s:
        yield s


class Answer:
    def __init__(self, status: int, headers: http.client.HTTPMessage, raw: bytes) -> None:
        self.status = status
        self.headers = headers
        self.raw = raw

    def json(self):
        return json.loads(self.raw)


def send(
    server: RunningServer,
    method: str,
    target: str,
    body: bytes | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    secret: str | None = SECRET,
    signed_as: tuple[str, str, bytes] | None = None,
    now: float | None = None,
) -> Answer:
    """Send one request; sign it (as ``signed_as`` = method, target, body if given)."""
    all_headers = dict(headers or {})
    if secret is not None:
        s_method, s_target, s_body = signed_as or (method, target, body or b"")
        all_headers["X-Channelstream-Signature"] = sign(secret, s_method, s_target, s_body, now=now)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, target, body=body, headers=all_headers)
        response = conn.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        conn.close()


def send_header(server: RunningServer, method: str, target: str, header: str, body=b"") -> Answer:
    return send(
        server, method, target, body, secret=None, headers={"X-Channelstream-Signature": header}
    )


def assert_refused(answer: Answer, reason: str, status: int = 401) -> dict:
    assert answer.status == status, answer.raw
    assert answer.headers["Content-Type"].startswith("application/json")
    body = answer.json()
    assert body["code"] == "unauthorized"
    assert body["reason"] == reason
    return body


def legacy_token(secret: str, now: float) -> str:
    class Signer(itsdangerous.TimestampSigner):
        def get_timestamp(self) -> int:
            return int(now)

    return Signer(secret).sign("channelstream").decode()


# -- valid calls ---------------------------------------------------------------------------


def test_signed_get_with_a_query_passes(secured):
    answer = send(secured, "GET", "/test/api/info?channels=a&channels=b%20c")
    assert answer.status == 200
    assert answer.json() == {
        "method": "GET",
        "path_qs": "/test/api/info?channels=a&channels=b%20c",
        "body": "",
        "caller": {"role": "api", "scheme": "signature"},
    }


@pytest.mark.parametrize("method", ["POST", "PATCH", "DELETE"])
def test_signed_calls_with_a_body_pass_and_the_view_reads_the_exact_bytes(secured, method):
    body = '[{"channel":"lobby","message":{"text":"h\u00e9"}}]'.encode()
    answer = send(secured, method, "/test/api/message", body)
    assert answer.status == 200, answer.raw
    echoed = answer.json()
    assert (echoed["method"], echoed["path_qs"]) == (method, "/test/api/message")
    assert echoed["body"].encode() == body


def test_the_target_is_checked_as_sent_not_as_decoded(secured):
    # PATH_INFO would say /test/api/~user/a b: the signature covers the escapes as written
    answer = send(secured, "GET", "/test/api/%7Euser/a%20b?q=%7E")
    assert answer.status == 200, answer.raw
    assert answer.json()["path_qs"] == "/test/api/%7Euser/a%20b?q=%7E"
    decoded = send(secured, "GET", "/test/api/%7Euser", signed_as=("GET", "/test/api/~user", b""))
    assert_refused(decoded, "bad_signature")


def test_a_network_in_allow_posting_from_admits_its_addresses(secured):
    # secured allows 127.0.0.0/8: every call of this module comes from 127.0.0.1
    assert send(secured, "GET", "/test/api/x").status == 200


# -- refused signatures --------------------------------------------------------------------


def test_missing_signature(secured):
    body = assert_refused(send(secured, "GET", "/test/api/x", secret=None), "missing")
    assert body["error"] == "missing X-Channelstream-Signature header"


def test_a_replayed_signature_is_refused(secured):
    header = sign(SECRET, "POST", "/test/api/message", b"[]")
    assert send_header(secured, "POST", "/test/api/message", header, b"[]").status == 200
    again = send_header(secured, "POST", "/test/api/message", header, b"[]")
    assert "already used" in assert_refused(again, "replayed")["error"]


@pytest.mark.parametrize("offset", [-120, 120])
def test_a_signature_outside_the_window_is_refused(secured, offset):
    answer = send(secured, "GET", "/test/api/x", now=time.time() + offset)
    assert_refused(answer, "expired")


@pytest.mark.parametrize(
    ("signed_as", "sent"),
    [
        (("POST", "/test/api/m", b"[]"), ("PATCH", "/test/api/m", b"[]")),  # method
        (("POST", "/test/api/m", b"[]"), ("POST", "/test/api/n", b"[]")),  # path
        (("GET", "/test/api/m?a=1", b""), ("GET", "/test/api/m?a=2", b"")),  # query
        (("GET", "/test/api/m?a=1", b""), ("GET", "/test/api/m?a=1&b=2", b"")),  # query added
        (("POST", "/test/api/m", b"[1]"), ("POST", "/test/api/m", b"[2]")),  # body
    ],
)
def test_any_tampering_is_refused(secured, signed_as, sent):
    method, target, body = sent
    answer = send(secured, method, target, body, signed_as=signed_as)
    message = assert_refused(answer, "bad_signature")["error"]
    assert f"{method} {target}" in message  # says what the server checked


def test_a_signature_made_with_another_secret_is_refused(secured):
    assert_refused(send(secured, "GET", "/test/api/x", secret="not-the-secret"), "bad_signature")


@pytest.mark.parametrize(
    "header", ["t=1,n=abc", "sig=abcdef", f"t={int(time.time())},n=a b,v1={'0' * 64}"]
)
def test_a_malformed_header_is_refused(secured, header):
    assert_refused(send_header(secured, "GET", "/test/api/x", header), "malformed")


def test_signatures_are_checked_alike_under_gunicorn(server):
    env = {"CHANNELSTREAM_SECRET": "s3cret", "CHANNELSTREAM_ADMIN_SECRET": "adm1n"}
    running = server(
        "production.ini",
        app=PROBE_APP,
        server={"workers": "1", "control_socket_disable": "true"},
        env=env,
    )
    answer = send(running, "POST", "/test/api/%7Em?x=1", b"[1]", secret="s3cret")
    assert answer.status == 200, answer.raw
    assert answer.json()["path_qs"] == "/test/api/%7Em?x=1"
    assert_refused(send(running, "POST", "/test/api/m", b"[1]", secret=SECRET), "bad_signature")


# -- addresses -----------------------------------------------------------------------------


def test_an_address_outside_allow_posting_from_gets_403(elsewhere):
    answer = send(elsewhere, "POST", "/test/api/message", b"[]")
    assert answer.status == 403
    assert answer.json() == {
        "error": "address 127.0.0.1 is not allowed to call the server API",
        "code": "forbidden",
    }
    admin = send(elsewhere, "GET", "/test/admin/x", secret=ADMIN_SECRET)
    assert admin.status == 403


def test_address_allowed_unit():
    nets = ip_networks("10.0.0.0/8, ::1, 192.168.1.7")
    assert address_allowed(nets, "10.200.3.4")
    assert address_allowed(nets, "::1")
    assert address_allowed(nets, "192.168.1.7")
    assert address_allowed(nets, "::ffff:10.1.2.3")  # IPv4-mapped, from a dual-stack listener
    assert not address_allowed(nets, "192.168.1.8")
    assert not address_allowed(nets, "127.0.0.1")
    assert not address_allowed(nets, "")
    assert not address_allowed(nets, "unix-socket")
    assert address_allowed((), "anything")  # empty = any
    anywhere = ip_networks("0.0.0.0")  # the original's "any address"
    assert address_allowed(anywhere, "203.0.113.9") and address_allowed(anywhere, "2001:db8::1")


# -- channelstream 0.7.1 tokens ------------------------------------------------------------


def test_a_fresh_legacy_token_is_accepted_when_enabled(secured):
    token = legacy_token(SECRET, time.time())
    answer = send(
        secured, "POST", "/test/api/message", b"[]", secret=None,
        headers={"x-channelstream-secret": token},
    )
    assert answer.status == 200, answer.raw
    assert answer.json()["caller"] == {"role": "api", "scheme": "legacy"}


def test_a_stale_legacy_token_is_refused(secured):
    token = legacy_token(SECRET, time.time() - 120)
    answer = send(
        secured, "GET", "/test/api/x", secret=None, headers={"x-channelstream-secret": token}
    )
    assert_refused(answer, "expired")


def test_a_legacy_token_of_another_secret_is_refused(secured):
    token = legacy_token("other", time.time())
    answer = send(
        secured, "GET", "/test/api/x", secret=None, headers={"x-channelstream-secret": token}
    )
    assert_refused(answer, "bad_signature")


def test_a_legacy_token_is_refused_when_not_enabled(probe_server):
    token = legacy_token(SECRET, time.time())
    answer = send(
        probe_server, "GET", "/test/api/x", secret=None, headers={"x-channelstream-secret": token}
    )
    assert "legacy_secret_header = false" in assert_refused(answer, "legacy_disabled")["error"]


def test_a_secret_in_the_query_string_is_never_accepted_nor_logged(secured):
    token = legacy_token(SECRET, time.time())
    answer = send(secured, "GET", f"/test/api/x?secret={token}", secret=None)
    body = assert_refused(answer, "secret_in_url")
    assert token not in answer.raw.decode()
    # not even together with a valid signature
    signed = send(secured, "GET", f"/test/api/x?secret={token}")
    assert_refused(signed, "secret_in_url")
    assert "never accepted" in body["error"]
    assert token not in secured.stderr and "secret=***" in secured.stderr


# -- admin ---------------------------------------------------------------------------------


def test_admin_by_signature(secured):
    answer = send(secured, "GET", "/test/admin/stats", secret=ADMIN_SECRET)
    assert answer.status == 200
    assert answer.json()["caller"] == {"role": "admin", "scheme": "signature"}


def test_admin_refuses_a_signature_made_with_the_api_secret(secured):
    answer = send(secured, "GET", "/test/admin/stats", secret=SECRET)
    assert_refused(answer, "bad_signature")
    assert answer.headers["WWW-Authenticate"].startswith('Basic realm="channelstream admin"')


def test_admin_by_basic_auth_with_any_user_name(secured):
    for user in ("admin", "someone"):
        response = requests.get(
            secured.url + "/test/admin/stats", auth=(user, ADMIN_SECRET), timeout=10
        )
        assert response.status_code == 200
        assert response.json()["caller"] == {"role": "admin", "scheme": "basic"}


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic " + base64.b64encode(f"admin:{SECRET}".encode()).decode(),
        "Basic " + base64.b64encode(b"admin:").decode(),
        "Basic " + base64.b64encode(ADMIN_SECRET.encode()).decode(),  # no colon
        "Basic !!notbase64",
        f"Bearer {ADMIN_SECRET}",
    ],
)
def test_admin_refuses_wrong_basic_credentials(secured, authorization):
    answer = send(
        secured, "GET", "/test/admin/stats", secret=None, headers={"Authorization": authorization}
    )
    assert_refused(answer, "bad_credentials")
    challenge = 'Basic realm="channelstream admin", charset="UTF-8"'
    assert answer.headers["WWW-Authenticate"] == challenge


def test_admin_without_credentials_is_challenged(secured):
    answer = send(secured, "GET", "/test/admin/stats", secret=None)
    assert "basic auth" in assert_refused(answer, "missing")["error"]
    assert "WWW-Authenticate" in answer.headers


def test_the_admin_secret_does_not_open_the_api(secured):
    assert_refused(send(secured, "GET", "/test/api/x", secret=ADMIN_SECRET), "bad_signature")


# -- body size -----------------------------------------------------------------------------


def test_a_body_at_the_limit_passes(secured):
    answer = send(secured, "POST", "/test/api/message", b"x" * LIMIT)
    assert answer.status == 200
    assert len(answer.json()["body"]) == LIMIT


def test_a_body_over_the_limit_by_content_length_gets_413(secured):
    answer = send(secured, "POST", "/test/api/message", b"x" * (LIMIT + 1))
    assert answer.status == 413
    assert answer.json() == {
        "error": f"the body is {LIMIT + 1} bytes; the limit is {LIMIT} bytes (max_body_size)",
        "code": "too_large",
    }


def test_413_comes_before_the_body_is_read(secured):
    # announce a gigabyte, send none of it: the answer comes at once
    header = sign(SECRET, "POST", "/test/api/message", b"")
    request = (
        "POST /test/api/message HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Length: {10**9}\r\nX-Channelstream-Signature: {header}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", secured.port), timeout=10) as sock:
        sock.sendall(request.encode())
        head = sock.recv(65536).decode("latin-1")
    assert head.startswith("HTTP/1.1 413 ")


def chunks(total: int, size: int = 300) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        part = b"y" * min(size, total - sent)
        sent += len(part)
        yield part


def test_a_chunked_body_under_the_limit_passes(secured):
    body = b"y" * 900
    conn = http.client.HTTPConnection("127.0.0.1", secured.port, timeout=10)
    headers = {"X-Channelstream-Signature": sign(SECRET, "POST", "/test/api/m", body)}
    conn.request("POST", "/test/api/m", body=chunks(900), headers=headers, encode_chunked=True)
    response = conn.getresponse()
    assert response.status == 200
    assert json.loads(response.read())["body"] == body.decode()
    conn.close()


def test_a_chunked_body_over_the_limit_gets_413(secured):
    body = b"y" * 5000
    conn = http.client.HTTPConnection("127.0.0.1", secured.port, timeout=10)
    headers = {"X-Channelstream-Signature": sign(SECRET, "POST", "/test/api/m", body)}
    conn.request("POST", "/test/api/m", body=chunks(5000), headers=headers, encode_chunked=True)
    response = conn.getresponse()
    assert response.status == 413
    assert json.loads(response.read()) == {
        "error": f"the chunked body is over the limit of {LIMIT} bytes (max_body_size)",
        "code": "too_large",
    }
    conn.close()


def test_an_unsigned_request_is_refused_without_reading_its_body(secured):
    # the signature is checked for format and time before the body is read
    answer = send(secured, "POST", "/test/api/m", b"x" * (LIMIT + 1), secret=None)
    assert_refused(answer, "missing")


# -- CORS ----------------------------------------------------------------------------------


def preflight(server: RunningServer, origin: str, path: str = "/any/path") -> requests.Response:
    return requests.options(
        server.url + path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-channelstream-signature",
        },
        timeout=10,
    )


def test_preflight_from_an_allowed_origin_gets_204_on_any_path(secured):
    for origin, path in ((ALLOWED_ORIGIN, "/any/path"), ("https://app.example:8443", "/message")):
        response = preflight(secured, origin, path)
        assert response.status_code == 204
        assert response.headers["Access-Control-Allow-Origin"] == origin
        assert response.headers["Vary"] == "Origin"
        methods = response.headers["Access-Control-Allow-Methods"]
        assert {"GET", "POST", "PATCH", "DELETE"} <= {m.strip() for m in methods.split(",")}
        headers = response.headers["Access-Control-Allow-Headers"]
        allowed = {h.strip().lower() for h in headers.split(",")}
        assert {"x-channelstream-signature", "content-type"} <= allowed
        assert "x-channelstream-secret" in allowed  # legacy tokens are on for this server


@pytest.mark.parametrize(
    "origin",
    ["http://evil.example", "https://allowed.example", "http://allowed.example:8080", "null"],
)
def test_preflight_from_another_origin_gets_no_cors_header(secured, origin):
    response = preflight(secured, origin)
    assert response.status_code != 204
    assert not any(name.lower().startswith("access-control-") for name in response.headers)


def test_error_answers_carry_the_cors_header_for_allowed_origins(secured):
    refused = send(secured, "GET", "/test/api/x", secret=None, headers={"Origin": ALLOWED_ORIGIN})
    assert refused.status == 401
    assert refused.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    missing = requests.get(secured.url + "/nope", headers={"Origin": ALLOWED_ORIGIN}, timeout=10)
    assert missing.status_code == 404
    assert missing.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    good = send(secured, "GET", "/test/api/x", headers={"Origin": ALLOWED_ORIGIN})
    assert good.status == 200 and good.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    other = send(secured, "GET", "/test/api/x", headers={"Origin": "http://evil.example"})
    assert other.status == 200 and "Access-Control-Allow-Origin" not in other.headers


def test_no_cors_header_at_all_when_allow_cors_is_empty(probe_server):
    response = preflight(probe_server, "http://allowed.example")
    assert not any(name.lower().startswith("access-control-") for name in response.headers)
    response = probe_server.get("/healthz", headers={"Origin": "http://allowed.example"})
    assert "Access-Control-Allow-Origin" not in response.headers


# -- in-process: the view option and the replay cache of the registry ----------------------


def app_with(**raw: str):
    return build_app(default_settings(raw), includes=["tests.support.testapp"])


def call(app, method: str, target: str, body: bytes = b"", secret: str = "s", **environ):
    request = Request.blank(target, method=method, body=body or None, environ=environ)
    request.headers["X-Channelstream-Signature"] = sign(secret, method, target, body)
    return request.get_response(app)


def test_a_full_replay_cache_answers_503_with_retry_after():
    app = app_with(secret="s", replay_cache_size="2")
    assert [call(app, "GET", "/test/api/x").status_code for _ in range(2)] == [200, 200]
    response = call(app, "GET", "/test/api/x")
    assert response.status_code == 503
    assert response.json["code"] == "unavailable"
    assert 1 <= int(response.headers["Retry-After"]) <= 61
    assert len(get_replay_cache(app.registry)) == 2


def test_the_api_is_disabled_without_a_secret():
    app = app_with()
    response = call(app, "GET", "/test/api/x")
    assert response.status_code == 403
    assert response.json["error"] == "the server API is disabled: the server has no secret set"
    response = call(app, "GET", "/test/admin/x")
    assert response.status_code == 403
    assert "no admin_secret" in response.json["error"]


def test_each_app_has_its_own_replay_cache():
    first, second = app_with(secret="s"), app_with(secret="s")
    assert get_replay_cache(first.registry) is not get_replay_cache(second.registry)


def bogus_auth_include(config: Configurator) -> None:
    config.add_route("bogus", "/bogus")
    config.add_view(lambda request: {}, route_name="bogus", renderer="json", auth="apii")


def test_an_unknown_auth_value_stops_configuration():
    with pytest.raises(ConfigurationExecutionError, match="auth='apii' is not a known view auth"):
        build_app(default_settings(), includes=["tests.security.test_gate.bogus_auth_include"])


def test_token_matches_only_a_configured_token():
    from channelstream.security.tokens import token_matches

    tokens = ("alpha", "béta")
    assert token_matches("alpha", tokens) and token_matches("béta", tokens)
    assert not token_matches("alph", tokens)
    assert not token_matches("", tokens) and not token_matches("", ("",))
    assert not token_matches("alpha", ())
