/*
 * status.js: the status panel. statusBoard (service) polls GET /healthz
 * every POLL_MS: the overall status, version, pid, uptime, every door with
 * its state, and the hub's cumulative counters, turned into per-second
 * rates (published, delivered, dropped) for the small charts. It polls
 * GET /demo/api/stats every STATS_MS for the admin counts (connections,
 * users, channels, messages), which the demo's backend reads with
 * admin_secret server-side.
 *
 * It notices a restart (another pid, or a smaller uptime) and an
 * unreachable server, and says so in the connection log.
 * statusBoard.door(name) gives a door's /healthz entry to other panels.
 */
(function () {
  "use strict";

  var demo = angular.module("demo");
  var POLL_MS = 2000;
  var STATS_MS = 5000;

  demo.factory("statusBoard", ["demoApi", "eventLog", "links", "Rates", "$interval", "$rootScope",
    function (demoApi, eventLog, links, Rates, $interval, $rootScope) {
      var board = {
        health: {},
        doors: [],
        stats: null,
        rates: {published: Rates.counter(60), delivered: Rates.counter(60), dropped: Rates.counter(60)}
      };
      var byName = {};
      var reachable = null;
      var pid = null;

      function healthz() {
        fetch("/healthz", {cache: "no-store", headers: {"Accept": "application/json"}})
          .then(function (response) { return response.json(); })
          .then(function (health) {
            if (reachable === false) { eventLog.add("server", "/healthz answers again", "ok"); }
            if (pid !== null && health.pid && health.pid !== pid) {
              eventLog.add("server", "the server restarted (pid " + pid + " -> " + health.pid + ")",
                           "warn");
            }
            pid = health.pid || pid;
            reachable = true;
            board.health = health;
            byName = health.doors || {};
            board.doors = Object.keys(byName).sort().map(function (name) {
              return angular.extend({name: name}, byName[name]);
            });
            var now = Date.now();
            var hub = health.hub || {};
            ["published", "delivered", "dropped"].forEach(function (key) {
              if (typeof hub[key] === "number") { board.rates[key].sample(hub[key], now); }
            });
            links.set("healthz", "server", health.status === "ok" ? "connected" : "degraded",
                      health.state);
            $rootScope.$applyAsync();
          }, function (error) {
            if (reachable !== false) {
              eventLog.add("server", "/healthz unreachable (" + error.message + ")", "warn");
            }
            reachable = false;
            board.health = {};
            links.set("healthz", "server", "down", error.message);
            $rootScope.$applyAsync();
          });
      }

      function stats() {
        demoApi.get("stats").then(function (answer) { board.stats = answer; }, function () {});
      }

      board.door = function (name) { return byName[name]; };

      healthz();
      stats();
      $interval(healthz, POLL_MS);
      $interval(stats, STATS_MS);
      return board;
    }]);

  demo.controller("StatusCtrl", ["statusBoard", function (statusBoard) {
    var vm = this;
    vm.rates = statusBoard.rates;
    Object.defineProperty(vm, "health", {get: function () { return statusBoard.health; }});
    Object.defineProperty(vm, "doors", {get: function () { return statusBoard.doors; }});
    Object.defineProperty(vm, "stats", {get: function () { return statusBoard.stats; }});
  }]);
})();
