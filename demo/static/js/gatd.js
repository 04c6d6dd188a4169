/*
 * gatd.js: the GATD panel. A socket.io client (vendored socket.io-client
 * 4.x, websocket transport) on the namespace /stream, as GATD's browsers
 * were: it emits "query" with key/value pairs (plus "time": N ms in the
 * past when "start N s in the past" is set) and receives one "data" event
 * per matching packet. The ack is {"ok": true} or {"error": "..."}; a
 * bad query keeps the previous one going.
 *
 * Values typed in the form are read as JSON when they are numbers, true,
 * false, null or quoted strings, else as plain strings: 70 matches
 * {"temperature": 70}, "70" (quoted) matches the string.
 *
 * The panel keeps the newest MAX_PACKETS packets and the packets/s of the
 * last minute. socket.io reconnects by itself (0.5 s to 5 s), and the
 * panel asks it to when the server ended the session (a shutdown); on each
 * reconnection the panel sends its query again, live from then on: GATD's
 * packets carry no offset to resume from, so the log says so (a query that
 * starts in the past gets the gap from the server's history).
 */
(function () {
  "use strict";

  var demo = angular.module("demo");
  var MAX_PACKETS = 100;

  function parseValue(text) {
    var trimmed = (text || "").trim();
    if (/^(-?\d+(\.\d+)?([eE][+-]?\d+)?|true|false|null|"(?:[^"\\]|\\.)*")$/.test(trimmed)) {
      return JSON.parse(trimmed);
    }
    return text;
  }

  demo.controller("GatdCtrl", ["demoConfig", "eventLog", "links", "Rates", "clockTime",
    "$interval", "$timeout", "$rootScope", "$window",
    function (demoConfig, eventLog, links, Rates, clockTime, $interval, $timeout, $rootScope,
              $window) {
      var vm = this;
      var socket = null;
      var connectedBefore = false;
      var counter = 0;
      var live = {};

      vm.pairs = [{key: "", value: ""}];
      vm.since = 0;
      vm.packets = [];
      vm.total = 0;
      vm.rate = Rates.events(60);
      vm.shown = "connecting...";
      vm.error = null;

      function setLink(state, detail) { links.set("gatd", "GATD socket.io", state, detail); }

      function emit(query, why) {
        vm.shown = "query " + JSON.stringify(query) + (why ? " (" + why + ")" : "");
        socket.emit("query", query, function (ack) {
          vm.error = ack && ack.error ? ack.error : null;
          $rootScope.$applyAsync();
        });
      }

      function onPacket(packet) {
        vm.total += 1;
        vm.rate.add(1);
        var json = JSON.stringify(packet);
        vm.packets.unshift({key: ++counter, time: clockTime(),
                            json: json.length > 240 ? json.slice(0, 240) + "..." : json});
        if (vm.packets.length > MAX_PACKETS) { vm.packets.length = MAX_PACKETS; }
        $rootScope.$applyAsync();
      }

      function connect(config) {
        setLink("connecting");
        socket = $window.io(config.namespace, {
          path: config.socketio_path,
          transports: ["websocket"],
          reconnectionDelay: 500,
          reconnectionDelayMax: 5000
        });
        socket.on("connect", function () {
          setLink("connected");
          if (connectedBefore) {
            eventLog.add("gatd", "reconnected; query sent again, live from now (packets carry " +
                         "no offset; start in the past to see the gap)", "ok");
            emit(live, "again after reconnecting");
          } else {
            emit(live, "every packet");
          }
          connectedBefore = true;
        });
        socket.on("disconnect", function (reason) {
          setLink("reconnecting", reason);
          eventLog.add("gatd", "socket.io disconnected (" + reason + ")", "warn");
          if (reason === "io server disconnect") {
            // the server ended the session (it was shutting down): socket.io
            // leaves reconnecting to us in that case
            $timeout(function () { socket.connect(); }, 1000);
          }
        });
        socket.on("connect_error", function (error) {
          setLink("reconnecting", error.message);
        });
        socket.on("data", onPacket);
        socket.on("error", function (error) {
          vm.error = error && error.message;
          $rootScope.$applyAsync();
        });
      }

      vm.addPair = function () { vm.pairs.push({key: "", value: ""}); };

      vm.run = function () {
        var query = {};
        vm.pairs.forEach(function (pair) {
          var key = (pair.key || "").trim();
          if (key) { query[key] = parseValue(pair.value); }
        });
        live = angular.copy(query);
        var seconds = Number(vm.since) || 0;
        if (seconds > 0) { query.time = Math.round(seconds * 1000); }
        vm.packets = [];
        vm.total = 0;
        if (socket) { emit(query); }
      };

      demoConfig.then(function (config) { connect(config.packets); });
      $interval(function () { vm.rate.tick(); }, 1000);
    }]);
})();
