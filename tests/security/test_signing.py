"""Signed calls: the wire format, every refusal, the replay cache, 0.7.1 tokens."""

from __future__ import annotations

import hashlib
import hmac

import itsdangerous
import pytest

from channelstream.security import signing
from channelstream.security.signing import (
    BadSignature,
    ExpiredSignature,
    MalformedSignature,
    MissingSignature,
    ReplayCache,
    ReplayCacheFull,
    ReplayedSignature,
    parse_header,
    request_target,
    sign,
    verify,
    verify_legacy_token,
)

SECRET = "s3cret"
T = 1_700_000_000
NONCE = "0123456789abcdef0123456789abcdef"
BODY = b'[{"channel":"lobby","user":"alice","message":{"text":"h\xc3\xa9"}}]'


def independent_hex(secret: str, t: int, n: str, method: str, path_qs: str, body: bytes) -> str:
    """The scheme of DESIGN.md, written out again without channelstream's code."""
    body_hash = hashlib.sha256(body).hexdigest()
    message = f"{t}\n{n}\n{method}\n{path_qs}\n{body_hash}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


# -- the wire format --------------------------------------------------------------------


def test_signing_vector_post_with_body():
    header = sign(SECRET, "post", "/message?x=1", BODY, now=T + 0.9, nonce=NONCE)
    expected = independent_hex(SECRET, T, NONCE, "POST", "/message?x=1", BODY)
    assert header == f"t={T},n={NONCE},v1={expected}"


def test_signing_vector_fixed_value():
    # a backend author can check their own implementation against this line
    vector = "6d455f69772b2ca89135c3d8ee77f7bf70b92ce7725c11b5b651382ca82bb9c9"
    assert sign("secret", "GET", "/info", b"", now=1, nonce="n") == f"t=1,n=n,v1={vector}"
    empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    message = f"1\nn\nGET\n/info\n{empty}".encode()
    assert signing.string_to_sign(1, "n", "GET", "/info", b"") == message
    assert hmac.new(b"secret", message, hashlib.sha256).hexdigest() == vector


def test_default_nonce_is_16_random_bytes_in_hex():
    first = parse_header(sign(SECRET, "GET", "/", b"", now=T))
    second = parse_header(sign(SECRET, "GET", "/", b"", now=T))
    assert len(first.n) == 32 and int(first.n, 16) >= 0
    assert first.n != second.n


def test_sign_refuses_an_empty_secret_and_a_bad_nonce():
    with pytest.raises(ValueError, match="empty secret"):
        sign("", "GET", "/", b"")
    with pytest.raises(ValueError, match="nonce"):
        sign(SECRET, "GET", "/", b"", nonce="a,b")


def test_verify_accepts_its_own_signature_and_str_bodies():
    header = sign(SECRET, "PATCH", "/message", BODY.decode(), now=T, nonce=NONCE)
    sig = verify(SECRET, "patch", "/message", BODY, header, window=60, now=T + 59)
    assert (sig.t, sig.n) == (T, NONCE)


def test_header_items_in_any_order_with_spaces_and_unknown_items():
    hex_ = independent_hex(SECRET, T, NONCE, "GET", "/info", b"")
    header = f" v1={hex_.upper()} , v2=future,n={NONCE},  t={T}"
    assert verify(SECRET, "GET", "/info", b"", header, window=60, now=T).v1 == hex_


# -- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing(header):
    with pytest.raises(MissingSignature) as info:
        verify(SECRET, "GET", "/", b"", header, window=60, now=T)
    assert info.value.status == 401
    assert info.value.as_dict()["reason"] == "missing"


@pytest.mark.parametrize(
    ("header", "why"),
    [
        ("garbage", "expected t="),
        (f"t={T},n={NONCE}", "no v1="),
        (f"t={T},t={T},n={NONCE},v1={'0' * 64}", "t repeats"),
        (f"t=-5,n={NONCE},v1={'0' * 64}", "whole unix seconds"),
        (f"t=1.5,n={NONCE},v1={'0' * 64}", "whole unix seconds"),
        (f"t={T},n=has space,v1={'0' * 64}", "n must be"),
        (f"t={T},n={'x' * 129},v1={'0' * 64}", "n must be"),
        (f"t={T},n={NONCE},v1=abc", "64 hex digits"),
        (f"t={T},n={NONCE},v1={'g' * 64}", "64 hex digits"),
        ("t=1," + "x" * 600, "longer than"),
    ],
)
def test_malformed(header, why):
    with pytest.raises(MalformedSignature, match=why) as info:
        verify(SECRET, "GET", "/", b"", header, window=60, now=T)
    assert info.value.as_dict() == {
        "error": info.value.message,
        "code": "unauthorized",
        "reason": "malformed",
    }


def test_expired_both_ways_and_the_window_edges():
    header = sign(SECRET, "GET", "/", b"", now=T, nonce=NONCE)
    verify(SECRET, "GET", "/", b"", header, window=60, now=T + 60)
    verify(SECRET, "GET", "/", b"", header, window=60, now=T - 60)
    with pytest.raises(ExpiredSignature, match="61 s behind"):
        verify(SECRET, "GET", "/", b"", header, window=60, now=T + 61)
    with pytest.raises(ExpiredSignature, match="61 s ahead"):
        verify(SECRET, "GET", "/", b"", header, window=60, now=T - 61)


@pytest.mark.parametrize(
    ("method", "path_qs", "body", "secret"),
    [
        ("PATCH", "/message?x=1", BODY, SECRET),  # method
        ("POST", "/messages?x=1", BODY, SECRET),  # path
        ("POST", "/message?x=2", BODY, SECRET),  # query
        ("POST", "/message", BODY, SECRET),  # query dropped
        ("POST", "/message?x=1", BODY + b" ", SECRET),  # body
        ("POST", "/message?x=1", b"", SECRET),  # body dropped
        ("POST", "/message?x=1", BODY, "other"),  # secret
    ],
)
def test_any_change_is_a_bad_signature(method, path_qs, body, secret):
    header = sign(SECRET, "POST", "/message?x=1", BODY, now=T, nonce=NONCE)
    with pytest.raises(BadSignature) as info:
        verify(secret, method, path_qs, body, header, window=60, now=T)
    assert info.value.reason == "bad_signature"
    assert path_qs in info.value.message  # says what the server checked
    assert hashlib.sha256(body).hexdigest() in info.value.message


def test_verify_uses_a_constant_time_comparison(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(signing.hmac, "compare_digest", spy)
    header = sign(SECRET, "GET", "/", b"", now=T, nonce=NONCE)
    verify(SECRET, "GET", "/", b"", header, window=60, now=T)
    assert len(calls) == 1


def test_verify_refuses_to_work_with_an_empty_secret():
    with pytest.raises(ValueError):
        verify("", "GET", "/", b"", "t=1,n=n,v1=" + "0" * 64, window=60, now=1)


def test_replay_is_refused_only_after_an_authentic_request():
    cache = ReplayCache(60)
    good = sign(SECRET, "GET", "/", b"", now=T, nonce=NONCE)
    forged = f"t={T},n={NONCE},v1={'0' * 64}"
    with pytest.raises(BadSignature):
        verify(SECRET, "GET", "/", b"", forged, window=60, now=T, replay_cache=cache)
    assert len(cache) == 0  # forgeries never fill the cache
    verify(SECRET, "GET", "/", b"", good, window=60, now=T, replay_cache=cache)
    with pytest.raises(ReplayedSignature, match="already used") as info:
        verify(SECRET, "GET", "/", b"", good, window=60, now=T + 1, replay_cache=cache)
    assert info.value.as_dict()["reason"] == "replayed"
    # same nonce, another second: another pair
    other = sign(SECRET, "GET", "/", b"", now=T + 1, nonce=NONCE)
    verify(SECRET, "GET", "/", b"", other, window=60, now=T + 1, replay_cache=cache)


# -- the replay cache ----------------------------------------------------------------------------


def test_replay_cache_evicts_pairs_once_outside_the_window():
    cache = ReplayCache(window=10, max_size=100)
    cache.remember(100, "a", now=100)
    cache.remember(105, "b", now=105)
    assert len(cache) == 2
    assert cache.evict(now=110) == 0  # 100 is exactly 10 s old: still acceptable, still kept
    assert cache.evict(now=111) == 1
    assert (100, "a") not in cache and (105, "b") in cache
    cache.remember(112, "c", now=116)  # remember evicts first
    assert (105, "b") not in cache and len(cache) == 1


def test_replay_cache_keeps_future_pairs_until_they_age_out():
    cache = ReplayCache(window=10, max_size=100)
    cache.remember(120, "f", now=111)  # 9 s ahead of the clock
    assert cache.evict(now=130) == 0
    with pytest.raises(ReplayedSignature):
        cache.remember(120, "f", now=130)
    assert cache.evict(now=131) == 1


def test_replay_cache_is_hard_bounded_and_says_when_to_retry():
    cache = ReplayCache(window=10, max_size=3)
    for i in range(3):
        cache.remember(100 + i, f"n{i}", now=100 + i)
    with pytest.raises(ReplayCacheFull) as info:
        cache.remember(103, "n3", now=103)
    assert len(cache) == 3
    assert info.value.status == 503 and info.value.code == "unavailable"
    assert info.value.retry_after == 8  # the oldest pair (t=100) leaves after 110
    assert "replay_cache_size = 3" in info.value.message
    cache.remember(111, "n4", now=111)  # room again once the oldest aged out
    assert len(cache) == 3


def test_replay_cache_refuses_a_repeat_even_when_full():
    cache = ReplayCache(window=10, max_size=1)
    cache.remember(100, "a", now=100)
    with pytest.raises(ReplayedSignature):
        cache.remember(100, "a", now=100)


def test_replay_cache_arguments():
    with pytest.raises(ValueError):
        ReplayCache(0)
    with pytest.raises(ValueError):
        ReplayCache(10, max_size=0)


# -- the request target ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "target"),
    [
        (
            {"RAW_URI": "/info?b=2&a=%20", "PATH_INFO": "/info", "QUERY_STRING": "x"},
            "/info?b=2&a=%20",
        ),
        ({"REQUEST_URI": "/a%2Fb?"}, "/a%2Fb?"),
        ({"RAW_URI": "http://hub.example:8000/message?x=1"}, "/message?x=1"),
        ({"RAW_URI": "http://hub.example"}, "/"),
        ({"RAW_URI": "http://hub.example?x=1"}, "/?x=1"),
        (
            {"SCRIPT_NAME": "/hub", "PATH_INFO": "/message", "QUERY_STRING": "x=1"},
            "/hub/message?x=1",
        ),
        ({"PATH_INFO": "/a b/\xc3\xa9", "QUERY_STRING": ""}, "/a%20b/%C3%A9"),
        ({"PATH_INFO": "/user/a@b;c=d,e~f"}, "/user/a@b;c=d,e~f"),
        ({}, "/"),
    ],
)
def test_request_target(environ, target):
    assert request_target(environ) == target


# -- channelstream 0.7.1 tokens -----------------------------------------------------------


class FixedSigner(itsdangerous.TimestampSigner):
    def __init__(self, secret, now):
        super().__init__(secret)
        self._now = now

    def get_timestamp(self):
        return self._now


def test_legacy_token_made_by_itsdangerous_is_accepted():
    token = FixedSigner(SECRET, T).sign("channelstream").decode()
    assert verify_legacy_token(SECRET, token, window=60, now=T + 30) == "channelstream"
    token = FixedSigner(SECRET, T).sign("/connect").decode()
    assert verify_legacy_token(SECRET, token, window=60, now=T - 30) == "/connect"


def test_legacy_token_outside_the_window_is_refused_both_ways():
    token = FixedSigner(SECRET, T).sign("channelstream").decode()
    with pytest.raises(ExpiredSignature):
        verify_legacy_token(SECRET, token, window=60, now=T + 61)
    with pytest.raises(ExpiredSignature):
        verify_legacy_token(SECRET, token, window=60, now=T - 61)


def test_legacy_token_of_another_secret_or_tampered_is_refused():
    token = FixedSigner("other", T).sign("channelstream").decode()
    with pytest.raises(BadSignature):
        verify_legacy_token(SECRET, token, window=60, now=T)
    good = FixedSigner(SECRET, T).sign("channelstream").decode()
    value, _, sig = good.split(".")
    later = itsdangerous.encoding.base64_encode(itsdangerous.encoding.int_to_bytes(T + 1000))
    with pytest.raises(BadSignature):
        verify_legacy_token(SECRET, f"{value}.{later.decode()}.{sig}", window=60, now=T + 1000)


@pytest.mark.parametrize("token", ["", "nodots", "a.b", "a..", "a.b.!!!", "é.b.c", "x" * 5000])
def test_legacy_token_malformed(token):
    with pytest.raises((MalformedSignature, MissingSignature, BadSignature)):
        verify_legacy_token(SECRET, token, window=60, now=T)
