/*
 * app.js: the AngularJS module "demo" and the services every panel shares.
 *
 * - demoApi: the page's backend (/demo/api/*). get(path) and send(method,
 *   path, body) return promises of the decoded JSON; a refused call rejects
 *   with an Error whose .status is the HTTP status (0: no answer) and whose
 *   message is the server's "error" text. Bodies go as application/json.
 * - demoConfig: a promise of GET /demo/api/config (fetched once).
 * - eventLog: the connection log. add(source, text, level) keeps the newest
 *   200 entries, newest first; level is "info", "ok" or "warn".
 * - links: the state of each live link of the page (chat websocket, GATD
 *   socket.io, loom tail, /healthz), shown as pills in the header.
 *   set(name, label, state, detail); state is a word the CSS colours:
 *   "connecting", "connected", "reconnecting", "down", "off".
 * - clockTime(date): "HH:MM:SS" in local time.
 *
 * Every callback from outside Angular (websocket, socket.io, fetch, timers
 * of the browser) ends with $rootScope.$applyAsync: the digests coalesce.
 */
(function () {
  "use strict";

  var demo = angular.module("demo", []);

  demo.config(["$compileProvider", function ($compileProvider) {
    $compileProvider.debugInfoEnabled(false);
  }]);

  function clockTime(date) {
    function two(n) { return (n < 10 ? "0" : "") + n; }
    date = date || new Date();
    return two(date.getHours()) + ":" + two(date.getMinutes()) + ":" + two(date.getSeconds());
  }
  demo.constant("clockTime", clockTime);

  demo.factory("demoApi", ["$q", "$rootScope", function ($q, $rootScope) {
    function call(method, path, body) {
      var options = {method: method, headers: {"Accept": "application/json"}, cache: "no-store"};
      if (body !== undefined) {
        options.headers["Content-Type"] = "application/json";
        options.body = JSON.stringify(body);
      }
      var answer = fetch("/demo/api/" + path, options).then(function (response) {
        return response.text().then(function (text) {
          var data = null;
          try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
          if (!response.ok) {
            var error = new Error((data && data.error) || ("HTTP " + response.status));
            error.status = response.status;
            throw error;
          }
          return data;
        });
      }, function (reason) {
        var error = new Error("no answer (" + reason.message + ")");
        error.status = 0;
        throw error;
      });
      return $q.when(answer).finally(function () { $rootScope.$applyAsync(); });
    }
    return {
      get: function (path) { return call("GET", path); },
      send: call
    };
  }]);

  demo.factory("demoConfig", ["demoApi", "$timeout", function (demoApi, $timeout) {
    // Retried until the server answers: the page may open before the server is up.
    function load(delay) {
      return demoApi.get("config").catch(function () {
        return $timeout(function () { return load(Math.min(delay * 2, 5000)); }, delay);
      });
    }
    return load(500);
  }]);

  demo.factory("eventLog", ["$rootScope", function ($rootScope) {
    var entries = [];
    var counter = 0;
    return {
      entries: entries,
      add: function (source, text, level) {
        entries.unshift({key: ++counter, time: clockTime(), source: source, text: text,
                         level: level || "info"});
        if (entries.length > 200) { entries.length = 200; }
        $rootScope.$applyAsync();
      }
    };
  }]);

  demo.factory("links", ["$rootScope", function ($rootScope) {
    var byName = {};
    var order = [];
    return {
      set: function (name, label, state, detail) {
        if (!byName[name]) { byName[name] = {name: name}; order.push(byName[name]); }
        angular.extend(byName[name], {label: label, state: state, detail: detail || ""});
        $rootScope.$applyAsync();
      },
      get: function (name) { return byName[name]; },
      all: function () { return order; }
    };
  }]);

  demo.controller("LinksCtrl", ["links", function (links) {
    this.all = links.all;
  }]);

  demo.controller("LogCtrl", ["eventLog", function (eventLog) {
    this.entries = eventLog.entries;
  }]);
})();
