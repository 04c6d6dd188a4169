"""The /demo page in headless Chromium against the real server: chat between
pages, GATD queries, loom tails, a frame channel's panel. Every page must end
without a console error (conftest's ``open_page``)."""

from __future__ import annotations

import http.client
import json
import uuid
from pathlib import Path

import pytest

from tests.demo.conftest import expect, message, start_server
from tests.demo.test_routes import zmq_like
from tests.support.api import api_client

pytestmark = pytest.mark.browser


def test_two_pages_chat_with_presence_state_private_messages_edits_deletes_history(
    demo_server, open_page
):
    alice, bob, carol = (f"{n}-{uuid.uuid4().hex[:4]}" for n in ("alice", "bob", "carol"))
    a, b, c = open_page(demo_server.url), open_page(demo_server.url), open_page(demo_server.url)
    a.sign_in(alice)
    b.sign_in(bob)
    c.sign_in(carol)

    # presence: each page lists the others in #lobby, with their state
    expect(a.page.locator(f"[data-test=presence] [data-user={bob}]")).to_be_visible()
    expect(
        b.page.locator(f"[data-test=presence] [data-user={alice}] [data-test=state]")
    ).to_have_text("online")

    # a message, then its edit, then its delete, seen on the other page
    a.page.fill("[data-test=compose]", "hello from alice")
    a.page.click("[data-test=send]")
    expect(message(b.page, "hello from alice")).to_have_count(1)
    own = message(a.page, "hello from alice")
    own.hover()
    own.locator("[data-test=edit]").click()
    a.page.fill("[data-test=edit-text]", "hello again, edited")
    a.page.click("[data-test=save]")
    edited = message(b.page, "hello again, edited")
    expect(edited).to_have_count(1)
    expect(edited.locator(".edited")).to_have_text("(edited)")
    expect(message(b.page, "hello from alice")).to_have_count(0)
    own = message(a.page, "hello again, edited")
    own.hover()
    own.locator("[data-test=delete]").click()
    expect(message(b.page, "hello again, edited")).to_have_count(0)
    expect(message(a.page, "hello again, edited")).to_have_count(0)
    # nobody can edit another's message: bob's page offers no edit on alice's
    a.page.fill("[data-test=compose]", "alice's own")
    a.page.click("[data-test=send]")
    expect(message(b.page, "alice's own")).to_have_count(1)
    expect(message(b.page, "alice's own").locator("[data-test=edit]")).to_have_count(0)

    # user state: alice goes away, bob sees it
    a.page.select_option("[data-test=status]", "away")
    expect(
        b.page.locator(f"[data-test=presence] [data-user={alice}] [data-test=state]")
    ).to_have_text("away")

    # a private message from bob to alice: alice sees it, carol does not
    b.page.click(f"[data-test=presence] [data-user={alice}] a")
    b.page.fill("[data-test=compose]", "psst, alice")
    b.page.click("[data-test=send]")
    expect(message(a.page, "psst, alice")).to_have_count(1)
    expect(message(a.page, "psst, alice")).to_contain_text("(private)")
    b.page.click("[data-test=to-clear]")
    b.page.fill("[data-test=compose]", "public again")
    b.page.click("[data-test=send]")
    expect(message(c.page, "public again")).to_have_count(1)
    expect(message(c.page, "psst, alice")).to_have_count(0)

    # history on join, and presence when leaving
    news = f"news-{uuid.uuid4().hex[:4]}"
    b.page.fill("[data-test=join-name]", news)
    b.page.click("[data-test=join]")
    expect(b.page.locator(f"[data-test=channel-{news}]")).to_be_visible()
    b.page.fill("[data-test=compose]", "headline one")
    b.page.click("[data-test=send]")
    expect(message(b.page, "headline one")).to_have_count(1)
    a.page.fill("[data-test=join-name]", news)
    a.page.click("[data-test=join]")
    expect(message(a.page, "headline one")).to_have_count(1)
    expect(b.page.locator(f"[data-test=presence] [data-user={alice}]")).to_be_visible()
    a.screenshot("chat-alice")
    b.screenshot("chat-bob")
    a.page.click(f"[data-test=leave-{news}]")
    expect(b.page.locator(f"[data-test=presence] [data-user={alice}]")).to_have_count(0)
    expect(message(b.page, f"{alice} left")).to_have_count(1)


def test_a_packet_query_shows_the_window_then_live_packets(demo_server, open_page):
    client = api_client(demo_server)
    profile = f"window-{uuid.uuid4().hex[:6]}"
    client.call("POST", "/packets", [{"profile_id": profile, "n": n} for n in (1, 2, 3)])
    page = open_page(demo_server.url)
    packets = page.page.locator("[data-test=packet]")
    expect(page.page.locator("[data-test=link-gatd]")).to_have_text("GATD socket.io: connected")

    # profile_id = <profile>, start 60 s in the past: the three, then live ones
    page.page.fill("[data-test=query-key]", "profile_id")
    page.page.fill("[data-test=query-value]", profile)
    page.page.fill("[data-test=query-since]", "60")
    page.page.click("[data-test=query-run]")
    expect(packets).to_have_count(3)
    expect(page.page.locator("[data-test=query-shown]")).to_contain_text('"time":60000')
    client.call(
        "POST", "/packets", [{"profile_id": profile, "n": 4}, {"profile_id": "other", "n": 4}]
    )
    expect(packets).to_have_count(4)
    expect(packets.first).to_contain_text('"n":4')

    # two pairs, a number value: only n = 2 of that profile, from the window
    page.page.click("[data-test=query-add]")
    page.page.locator("[data-test=query-key]").nth(1).fill("n")
    page.page.locator("[data-test=query-value]").nth(1).fill("2")
    page.page.click("[data-test=query-run]")
    expect(packets).to_have_count(1)
    expect(packets.first).to_contain_text('"n":2')

    # no time: live only
    page.page.locator("[data-test=query-value]").nth(1).fill("5")
    page.page.fill("[data-test=query-since]", "0")
    page.page.click("[data-test=query-run]")
    expect(page.page.locator("[data-test=query-shown]")).not_to_contain_text("time")
    client.call("POST", "/packets", [{"profile_id": profile, "n": 5}])
    expect(packets).to_have_count(1)
    expect(packets.first).to_contain_text('"n":5')
    page.screenshot("packets")


class Upload:
    """A chunked loom upload the test writes line by line."""

    def __init__(self, url: str, stream_id: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=15)
        self.conn.putrequest("POST", f"/stream/{stream_id}")
        self.conn.putheader("Transfer-Encoding", "chunked")
        self.conn.putheader("X-Stream-Metadata", json.dumps({"job": "test build"}))
        self.conn.endheaders()

    def write(self, text: str) -> None:
        data = text.encode()
        self.conn.send(b"%x\r\n%s\r\n" % (len(data), data))

    def end(self) -> int:
        self.conn.send(b"0\r\n\r\n")
        response = self.conn.getresponse()
        response.read()
        self.conn.close()
        return response.status


def test_a_loom_stream_appears_and_is_tailed_live(demo_server, open_page):
    page = open_page(demo_server.url)
    stream_id = f"tail-{uuid.uuid4().hex[:6]}"
    upload = Upload(demo_server.url, stream_id)
    upload.write("step 1: configure\n")
    row = page.page.locator(
        "[data-test=streams] tr", has=page.page.locator(f"[data-test=stream-{stream_id}]")
    )
    expect(row.locator("[data-test=stream-state]")).to_have_text("live")
    page.page.click(f"[data-test=stream-{stream_id}]")
    tail = page.page.locator("[data-test=tail]")
    expect(tail).to_contain_text("step 1: configure")
    expect(page.page.locator("[data-test=tail-state]")).to_have_text("live")
    upload.write("step 2: build\n")
    expect(tail).to_contain_text("step 2: build")
    upload.write("step 3: done\n")
    expect(tail).to_contain_text("step 3: done")
    page.screenshot("loom")
    assert upload.end() == 201
    expect(page.page.locator("[data-test=tail-state]")).to_have_text("finished")
    expect(row.locator("[data-test=stream-state]")).to_have_text("finished")
    assert tail.text_content() == "step 1: configure\nstep 2: build\nstep 3: done\n"


def test_a_frame_channel_gets_a_panel(tmp_path: Path, open_page):
    sources = json.dumps([{"address": "tcp://127.0.0.1:9", "channel": "det"}])
    with start_server(tmp_path, **{"zmq.sources": sources}) as server:
        page = open_page(server.url)
        panel = page.page.locator('[data-test="frames-channel:det"]')
        expect(panel.locator("h2")).to_contain_text("ZMQ det")
        expect(panel.locator("[data-test=door]")).to_contain_text("zmq-source:det")
        expect(page.page.locator('[data-test="link-frames-channel:det"]')).to_contain_text(
            "connected"
        )
        hub = api_client(server)
        hub.channel_config({"det": {}})
        hub.message(zmq_like("det", 7))
        row = panel.locator("[data-test=frames] tr").first
        expect(row).to_contain_text("array-1.0")
        expect(row).to_contain_text('"shape":[2,3]')
        expect(row).to_contain_text('"frame":7')
        page.screenshot("frames")
