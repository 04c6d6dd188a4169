// A socket.io-client 4.x client of /stream, driven by tests/sio/test_node.py.
//
// argv[2]: JSON {"url", "auth", "query", "transports", "path"}; connects at once.
// stdin:   JSON lines {"cmd": "call", "id", "event", "data"} (emit with an ack),
//          {"cmd": "transport", "id"} (answered as an ack: the engine.io transport's
//          name), {"cmd": "close"}.
// stdout:  JSON lines {"connect": id}, {"connect_error": message},
//          {"event": name, "data": value} for every server event,
//          {"ack": id, "data": value}, {"disconnect": reason}.
"use strict";

const readline = require("readline");
const { io } = require("socket.io-client");

const options = JSON.parse(process.argv[2]);
const out = (value) => process.stdout.write(JSON.stringify(value) + "\n");

const socket = io(options.url + "/stream", {
  auth: options.auth || undefined,
  query: options.query || undefined,
  transports: options.transports || ["websocket"],
  path: "/" + (options.path || "socket.io") + "/",
  reconnection: false,
  timeout: 10000,
});

socket.on("connect", () => out({ connect: socket.id }));
socket.on("connect_error", (err) => out({ connect_error: err.message }));
socket.on("disconnect", (reason) => out({ disconnect: reason }));
socket.onAny((event, data) => out({ event, data }));

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const cmd = JSON.parse(line);
  if (cmd.cmd === "call") {
    socket.timeout(10000).emit(cmd.event, cmd.data, (err, data) =>
      out({ ack: cmd.id, data: err ? { timeout: true } : data })
    );
  } else if (cmd.cmd === "transport") {
    out({ ack: cmd.id, data: socket.io.engine.transport.name });
  } else if (cmd.cmd === "close") {
    socket.close();
    setTimeout(() => process.exit(0), 50);
  }
});
process.stdin.on("end", () => {
  socket.close();
  setTimeout(() => process.exit(0), 50);
});
