"""The page recovers: after a server restart (same port; history is gone, so it
says that history no longer reached back and shows what the server has now),
and after a network drop (the server kept everything: it resumes by offset
and shows exactly what it missed, once)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.demo.conftest import expect, message, start_server
from tests.support.api import api_client
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.browser


def log_entry(page, text: str):
    return page.locator("[data-test=log-entry]", has_text=text)


def test_the_page_recovers_after_the_server_restarts(tmp_path: Path, open_page):
    with start_server(tmp_path) as server:
        page = open_page(server.url)
        user = f"alice-{uuid.uuid4().hex[:4]}"
        page.sign_in(user)
        hub = api_client(server)
        hub.message(
            {"channel": "lobby", "user": "hubbot", "message": {"text": "before the restart"}}
        )
        expect(message(page.page, "before the restart")).to_have_count(1)
        hub.call("POST", "/packets", [{"profile_id": "restart", "n": 1}])
        expect(page.page.locator("[data-test=packet]", has_text='"n":1')).to_have_count(1)
        chat_link = page.page.locator("[data-test=link-chat]")
        expect(chat_link).to_have_text("chat /ws: connected")

        page.allow_network_errors()
        server.stop()
        expect(chat_link).to_have_text("chat /ws: reconnecting")
        expect(page.page.locator("[data-test=health]")).to_have_text("unreachable")
        server.start()

        # the page signed in again and resumed; the new server's history does not reach back
        expect(log_entry(page.page, "#lobby: history no longer reached back")).to_have_count(1)
        expect(chat_link).to_have_text("chat /ws: connected")
        expect(page.page.locator("[data-test=messages]")).to_contain_text(
            "history no longer reached back"
        )
        expect(message(page.page, "before the restart")).to_have_count(0)
        expect(log_entry(page.page, "the server restarted")).to_have_count(1)

        # and it is live again: chat, presence, packets
        hub = api_client(server)
        hub.message(
            {"channel": "lobby", "user": "hubbot", "message": {"text": "after the restart"}}
        )
        expect(message(page.page, "after the restart")).to_have_count(1)
        assert user in hub.info(channels=["lobby"])["channels"]["lobby"]["users"]
        expect(page.page.locator("[data-test=link-gatd]")).to_have_text("GATD socket.io: connected")
        hub.call("POST", "/packets", [{"profile_id": "restart", "n": 2}])
        expect(page.page.locator("[data-test=packet]", has_text='"n":2')).to_have_count(1)
        page.screenshot("after-restart")


def test_the_page_resumes_what_it_missed_during_a_network_drop(tmp_path: Path, open_page):
    with start_server(tmp_path) as server, TcpProxy(("127.0.0.1", server.port)) as proxy:
        page = open_page(f"http://127.0.0.1:{proxy.port}")
        user = f"bob-{uuid.uuid4().hex[:4]}"
        page.sign_in(user)
        hub = api_client(server)
        hub.message({"channel": "lobby", "user": "hubbot", "message": {"text": "before the drop"}})
        expect(message(page.page, "before the drop")).to_have_count(1)
        chat_link = page.page.locator("[data-test=link-chat]")

        page.allow_network_errors()
        proxy.cut()
        expect(chat_link).to_have_text("chat /ws: reconnecting")
        hub.message({"channel": "lobby", "user": "hubbot", "message": {"text": "missed one"}})
        hub.message({"channel": "lobby", "user": "hubbot", "message": {"text": "missed two"}})
        proxy.resume()

        expect(log_entry(page.page, "missed frame(s) caught up")).to_have_count(1)
        expect(chat_link).to_have_text("chat /ws: connected")
        for text in ("before the drop", "missed one", "missed two"):
            expect(message(page.page, text)).to_have_count(1)
        expect(log_entry(page.page, "history no longer reached back")).to_have_count(0)
        hub.message({"channel": "lobby", "user": "hubbot", "message": {"text": "live again"}})
        expect(message(page.page, "live again")).to_have_count(1)
        texts = page.page.locator("[data-test=message] [data-test=text]").all_inner_texts()
        assert [t for t in texts if t in ("missed one", "missed two")] == [
            "missed one",
            "missed two",
        ]
        page.screenshot("after-network-drop")
