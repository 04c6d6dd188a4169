"""An echo endpoint on the project's websocket class, for the Autobahn fuzzing client.

``python tests/web/autobahn/echo_server.py PORT`` serves, on 127.0.0.1:PORT, with
the project's HTTP server (:mod:`channelstream.web.httpserver`, which answers
the upgrade), ``/echo``: a :class:`channelstream.web.websocket.WebSocket` whose
reader keeps data messages (as socket.io's does) and sends each one back as it
came. Any other GET answers 200 (the harness waits for it). Messages up to
16 MiB are taken (Autobahn's largest is 16 MiB).
"""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402

from gevent import socket  # noqa: E402

from channelstream.web.httpserver import WSGIServer  # noqa: E402
from channelstream.web.websocket import WebSocket  # noqa: E402
from channelstream.web.wsframes import TAKEOVER_KEY, FrameReader, HandshakeError, frame  # noqa: E402

MAX_MESSAGE = 16 << 20


class EchoWebSocket(WebSocket):
    """Sends every message back as it came (text or binary)."""

    def new_reader(self) -> FrameReader:
        return FrameReader(MAX_MESSAGE, keep_data=True)

    def on_message(self, opcode: int, payload: bytes) -> None:
        self.send(frame(payload, opcode))


def app(environ, start_response):
    takeover = environ.get(TAKEOVER_KEY)
    if takeover is None:
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
        return [b"ok\n"]
    try:
        sock = takeover()
    except HandshakeError as err:
        body = str(err).encode()
        start_response("400 Bad Request", [("Content-Length", str(len(body)))])
        return [body]
    EchoWebSocket(sock).start_reading()
    return []


def main() -> None:
    port = int(sys.argv[1])
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(128)
    WSGIServer(listener, app, raw_websocket_paths={"/echo"}).serve_forever()


if __name__ == "__main__":
    main()
