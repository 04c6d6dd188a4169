/*
 * frames.js: panels of frame channels (ZMQ, G3): what flows on a hub
 * channel of frames, each frame's type and values, and the rate.
 *
 * FramesCtrl lists /demo/api/config's "frames" entries ({channel, title,
 * door, health, url}); the page renders a <frame-panel entry="..."> for
 * each. A panel reads its entry's url, Server-Sent Events whose data is
 * {"frames": [summary...], "skipped": n} (demo/frames.py; a summary's
 * "values" flatten the frame's JSON body: "message.htype",
 * "message.header.shape"...), keeps the newest MAX_FRAMES and the frames/s
 * of the last minute, computed from the channel's offsets (so frames the
 * tap skipped still count). The browser's EventSource reconnects by
 * itself. The panel shows the state of each /healthz door of entry.health
 * (statusBoard, status.js).
 *
 * frameDescribers: entry.door -> function(summary) returning {kind, values}
 * (kind: what sort of frame, e.g. an htype or a G3 frame type; values: the
 * values worth showing). "default" serves a door without one.
 */
(function () {
  "use strict";

  var demo = angular.module("demo");
  var MAX_FRAMES = 20;

  function merged(a, b) { return angular.extend({}, a || {}, b || {}); }

  var describers = {
    "default": function (f) {
      return {kind: f.type || (f.fields && (f.fields.htype || f.fields.type)) || f.kind,
              values: merged(f.fields, f.values)};
    },
    // the ZMQ door's frames: {"message": {"htype", "header": {...}, "parts": [...]}}
    // (the header's values but its htype, which is the kind)
    "zmq": function (f) {
      var values = f.values || {};
      var header = {};
      Object.keys(values).forEach(function (key) {
        if (key.indexOf("message.header.") === 0 && key !== "message.header.htype") {
          header[key.slice(15)] = values[key];
        }
      });
      return {kind: values["message.htype"] || f.type || f.kind,
              values: Object.keys(header).length ? header : values};
    },
    // the G3 door's frames: {"message": {"frame_type", "objects": {...}, "opaque": {...}}}
    "g3": function (f) {
      var values = f.values || {};
      var shown = {};
      Object.keys(values).forEach(function (key) {
        if (key.indexOf("message.objects.") === 0) { shown[key.slice(16)] = values[key]; }
        if (key.indexOf("message.opaque.") === 0) { shown[key.slice(15)] = values[key]; }
      });
      return {kind: values["message.frame_type"] || f.type || f.kind, values: shown};
    }
  };
  demo.constant("frameDescribers", describers);

  demo.controller("FramesCtrl", ["demoConfig", function (demoConfig) {
    var vm = this;
    vm.channels = [];
    demoConfig.then(function (config) { vm.channels = config.frames || []; });
  }]);

  demo.directive("framePanel", ["frameDescribers", "Rates", "clockTime", "links", "statusBoard",
    "$interval", "$rootScope",
    function (frameDescribers, Rates, clockTime, links, statusBoard, $interval, $rootScope) {
      return {
        restrict: "E",
        scope: {entry: "<"},
        template:
          '<h2>{{entry.title}} <small>hub channel <code>{{entry.channel}}</code></small></h2>' +
          '<p><span class="pill" ng-repeat="name in entry.health" ng-class="state(name)" ' +
          'data-test="door">{{name}}: {{state(name)}}</span> ' +
          '{{total}} frames seen, {{skipped}} skipped by the tap</p>' +
          '<figure class="wide"><figcaption>frames/s</figcaption>' +
          '<sparkline series="rate" wide="true"></sparkline></figure>' +
          '<div class="frames-scroll"><table class="frames-table" data-test="frames">' +
          '<tr ng-repeat="f in frames track by f.key"><td class="time">{{f.time}}</td>' +
          '<td>#{{f.offset}}</td><td><b>{{f.kind}}</b></td><td class="meta">{{f.values}}</td>' +
          '<td class="num">{{f.size ? f.size + " B" : ""}}</td></tr></table></div>',
        link: function (scope) {
          var entry = scope.entry;
          var describe = frameDescribers[entry.door] || frameDescribers["default"];
          var lastOffset = 0;
          var counter = 0;
          var linkName = "frames-" + entry.channel;
          scope.frames = [];
          scope.total = 0;
          scope.skipped = 0;
          scope.rate = Rates.counter(60);
          scope.state = function (name) {
            var door = statusBoard.door(name);
            return door ? door.state : "absent";
          };

          var source = new EventSource(entry.url);
          links.set(linkName, entry.title, "connecting");
          source.onopen = function () { links.set(linkName, entry.title, "connected"); };
          source.onerror = function () { links.set(linkName, entry.title, "reconnecting"); };
          source.onmessage = function (event) {
            var data;
            try { data = JSON.parse(event.data); } catch (e) { return; }
            scope.skipped += data.skipped || 0;
            (data.frames || []).forEach(function (f) {
              var shown = describe(f);
              scope.total += 1;
              lastOffset = f.offset;
              scope.frames.unshift({key: ++counter, offset: f.offset, kind: shown.kind,
                                    values: JSON.stringify(shown.values), size: f.size,
                                    time: clockTime(new Date(f.time))});
            });
            scope.total += data.skipped || 0;
            if (scope.frames.length > MAX_FRAMES) { scope.frames.length = MAX_FRAMES; }
            $rootScope.$applyAsync();
          };
          var ticker = $interval(function () { scope.rate.sample(lastOffset, Date.now()); }, 1000);
          scope.$on("$destroy", function () { source.close(); $interval.cancel(ticker); });
        }
      };
    }]);
})();
