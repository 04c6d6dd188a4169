/*
 * charts.js: per-second rates and the small SVG chart that draws them.
 *
 * - Rates.counter(size): a series fed with a cumulative counter
 *   (sample(total, timeMs), e.g. /healthz's hub.delivered): each sample adds
 *   (total - previous) / seconds. A counter that went down (the server
 *   restarted) starts a new baseline and adds nothing.
 * - Rates.events(size): a series fed with events (add(n)); tick() closes the
 *   current second and adds its count per second. Call tick() about once a
 *   second (the caller's $interval).
 *   Both keep the newest `size` values in .values (oldest first), .last, and
 *   .version (bumped on every change, what the chart watches).
 * - <sparkline series="..." wide="true"></sparkline>: a polyline of
 *   series.values scaled to its maximum, with the latest value beside it;
 *   a young series spreads over at least 20 slots, then the last `size`
 *   values slide through.
 *   Plain SVG, no chart library.
 */
(function () {
  "use strict";

  var demo = angular.module("demo");

  function Series(size) {
    this.size = size;
    this.values = [];
    this.last = 0;
    this.version = 0;
  }
  Series.prototype.push = function (value) {
    this.values.push(value);
    if (this.values.length > this.size) { this.values.shift(); }
    this.last = value;
    this.version += 1;
  };

  function CounterRate(size) {
    Series.call(this, size);
    this.previous = null;
  }
  CounterRate.prototype = Object.create(Series.prototype);
  CounterRate.prototype.sample = function (total, timeMs) {
    var previous = this.previous;
    this.previous = {total: total, time: timeMs};
    if (!previous || total < previous.total || timeMs <= previous.time) { return; }
    this.push((total - previous.total) * 1000 / (timeMs - previous.time));
  };

  function EventRate(size) {
    Series.call(this, size);
    this.count = 0;
    this.since = Date.now();
  }
  EventRate.prototype = Object.create(Series.prototype);
  EventRate.prototype.add = function (n) { this.count += (n === undefined ? 1 : n); };
  EventRate.prototype.tick = function () {
    var now = Date.now();
    var seconds = Math.max((now - this.since) / 1000, 0.001);
    this.push(this.count / seconds);
    this.count = 0;
    this.since = now;
  };

  demo.constant("Rates", {
    counter: function (size) { return new CounterRate(size || 60); },
    events: function (size) { return new EventRate(size || 60); }
  });

  demo.directive("sparkline", function () {
    return {
      restrict: "E",
      scope: {series: "<", wide: "@"},
      template:
        '<span class="spark" ng-class="{wide: wide}">' +
        '<svg ng-attr-view_box="0 0 {{w}} {{h}}" ng-attr-width="{{w}}" ng-attr-height="{{h}}"' +
        ' preserveAspectRatio="none">' +
        '<polyline ng-attr-points="{{points}}"></polyline></svg>' +
        '<b class="spark-now">{{series.last | number:1}}</b>' +
        '<small class="spark-max">max {{max | number:1}}</small></span>',
      link: function (scope) {
        scope.w = scope.wide ? 320 : 120;
        scope.h = scope.wide ? 44 : 30;
        scope.points = "";
        scope.max = 0;
        scope.$watch("series.version", function () {
          var values = (scope.series && scope.series.values) || [];
          var size = (scope.series && scope.series.size) || 60;
          var max = 0;
          values.forEach(function (v) { if (v > max) { max = v; } });
          scope.max = max;
          // a young series spreads over at least a third of the window, then slides
          var span = Math.max(values.length, Math.min(size, 20));
          var step = scope.w / Math.max(span - 1, 1);
          var offset = (span - values.length) * step;
          scope.points = values.map(function (v, i) {
            var y = scope.h - 1 - (max ? v / max : 0) * (scope.h - 3);
            return (offset + i * step).toFixed(1) + "," + y.toFixed(1);
          }).join(" ");
        });
      }
    };
  });
})();
