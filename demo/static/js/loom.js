/*
 * loom.js: the loom panel. GET /streams every POLL_MS lists the streams
 * (newest first, at most MAX_STREAMS) with their state and size; selecting
 * one tails it: GET /stream/<id> read with fetch's streaming body, so a
 * live stream's bytes appear as the producer sends them and the tail ends
 * when the stream does (then /streams/<id> says how: finished or aborted).
 * The pane keeps the last MAX_TEXT characters.
 *
 * Until a stream is clicked, the panel follows the newest live stream (and
 * the next one when it ends); a click pins the selection. A tail cut by
 * a restart or a network drop is started again from the beginning once
 * /streams answers again (loom keeps every acknowledged byte on disk).
 * Open loom only: with loom.tokens set, /demo/api/config says why the panel
 * is empty (the page never holds a token).
 *
 * scroll-bottom="expr": keeps an element scrolled to its end when expr changes.
 */
(function () {
  "use strict";

  var demo = angular.module("demo");
  var POLL_MS = 2000;
  var MAX_STREAMS = 30;
  var MAX_TEXT = 65536;

  demo.directive("scrollBottom", function () {
    return {
      restrict: "A",
      link: function (scope, element, attrs) {
        scope.$watch(attrs.scrollBottom, function () {
          var node = element[0];
          node.scrollTop = node.scrollHeight;
        });
      }
    };
  });

  demo.controller("LoomCtrl", ["demoConfig", "eventLog", "links", "$interval", "$rootScope",
    function (demoConfig, eventLog, links, $interval, $rootScope) {
      var vm = this;
      var controller = null;
      var reachable = true;
      var following = true;  // until the user picks a stream
      var ended = false;  // the stream tailed now has ended

      vm.streams = [];
      vm.selected = null;
      vm.text = "";
      vm.tailState = "";
      vm.tailBytes = 0;
      vm.reason = null;

      function apply() { $rootScope.$applyAsync(); }

      function describe(stream) {
        var meta = stream.metadata === null || stream.metadata === undefined ? "" :
          JSON.stringify(stream.metadata);
        return {id: stream.id, state: stream.state, size: stream.size,
                meta: meta.length > 80 ? meta.slice(0, 80) + "..." : meta};
      }

      function poll() {
        fetch("/streams", {cache: "no-store", headers: {"Accept": "application/json"}})
          .then(function (response) {
            return response.json().catch(function () { return {}; }).then(function (data) {
              if (!response.ok) { throw new Error(data.error || "HTTP " + response.status); }
              return data;
            });
          })
          .then(function (data) {
            var streams = (data.streams || []).slice(-MAX_STREAMS).reverse().map(describe);
            vm.streams = streams;
            vm.reason = null;
            if (!reachable) { eventLog.add("loom", "/streams answers again", "ok"); }
            reachable = true;
            var newest = streams.filter(function (s) { return s.state === "live"; })[0];
            if (vm.tailState === "lost" && vm.selected) {
              eventLog.add("loom", "tailing " + vm.selected + " again from its start", "info");
              tail(vm.selected);
            } else if (following && newest && newest.id !== vm.selected &&
                       (!vm.selected || ended)) {
              tail(newest.id);
            }
            apply();
          }, function (error) {
            if (reachable) { eventLog.add("loom", "/streams: " + error.message, "warn"); }
            reachable = false;
            apply();
          });
      }

      function finished(id, mine) {
        ended = true;
        fetch("/streams/" + encodeURIComponent(id), {cache: "no-store"})
          .then(function (response) { return response.json(); })
          .then(function (info) {
            if (mine === controller) { vm.tailState = info.state || "ended"; apply(); }
          }, function () {
            if (mine === controller) { vm.tailState = "ended"; apply(); }
          });
      }

      function tail(id) {
        if (controller) { controller.abort(); }
        var mine = controller = new AbortController();
        ended = false;
        vm.selected = id;
        vm.text = "";
        vm.tailBytes = 0;
        vm.tailState = "connecting";
        links.set("loom", "loom tail", "connecting", id);
        fetch("/stream/" + encodeURIComponent(id), {signal: mine.signal, cache: "no-store"})
          .then(function (response) {
            if (!response.ok) { throw new Error("HTTP " + response.status); }
            vm.tailState = response.headers.get("X-Stream-State") || "live";
            links.set("loom", "loom tail", "connected", id);
            var reader = response.body.getReader();
            var decoder = new TextDecoder();
            function pump() {
              return reader.read().then(function (chunk) {
                if (mine !== controller) { return; }
                if (chunk.done) {
                  vm.text += decoder.decode();
                  links.set("loom", "loom tail", "off", id + " ended");
                  finished(id, mine);
                  apply();
                  return;
                }
                vm.tailBytes += chunk.value.length;
                vm.text += decoder.decode(chunk.value, {stream: true});
                if (vm.text.length > MAX_TEXT) { vm.text = vm.text.slice(-MAX_TEXT); }
                apply();
                return pump();
              });
            }
            apply();
            return pump();
          })
          .catch(function (error) {
            if (error.name === "AbortError" || mine !== controller) { return; }
            vm.tailState = "lost";
            links.set("loom", "loom tail", "reconnecting", error.message);
            eventLog.add("loom", "tail of " + id + " cut (" + error.message + ")", "warn");
            apply();
          });
      }

      vm.tail = function (id) {
        following = false;
        tail(id);
      };

      demoConfig.then(function (config) {
        if (!config.loom.available) {
          vm.reason = config.loom.reason;
          return;
        }
        poll();
        $interval(poll, POLL_MS);
      });
    }]);
})();
