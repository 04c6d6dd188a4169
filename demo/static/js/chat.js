/*
 * chat.js: the chat panel. The page signs in, joins, posts, edits and
 * deletes through the demo's backend (/demo/api/*, which calls the signed
 * server API server-side: the page never holds the secret) and receives
 * every frame on the websocket /ws?conn_id=...&resume=...
 *
 * chatLink (service) keeps, per joined channel, its messages (newest last,
 * at most MAX_MESSAGES), its users with their public state, and an unread
 * count; and the resume position of every stream: {channel: [epoch,
 * offset]} from the last frame that carried one (global private messages
 * under ""), or from the channel's epoch and last offset when it was joined
 * (the history shown then).
 *
 * Reconnection: when the websocket closes (server restart, network drop,
 * collected connection) the link signs in again with the same conn_id
 * (POST /demo/api/session keeps a connection the server still has, makes it
 * again after a restart) and reopens /ws with `resume`. The server then
 * sends what was missed (frames with catchup: true) and the log says how
 * many; or, for a channel whose history no longer reaches back (a new epoch
 * after a restart, or too much missed), a resume_failed frame first: the
 * channel is then shown from the history the sign-in answer holds, and the
 * log and the channel say so. Retries back off from 0.5 s to 5 s.
 */
(function () {
  "use strict";

  var demo = angular.module("demo");
  var MAX_MESSAGES = 200;

  function utcTime(iso, clockTime) {
    if (!iso) { return ""; }
    var date = new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(iso) ? iso : iso + "Z");
    return isNaN(date.getTime()) ? "" : clockTime(date);
  }

  demo.factory("chatLink", ["demoApi", "eventLog", "links", "clockTime", "$timeout", "$rootScope",
    function (demoApi, eventLog, links, clockTime, $timeout, $rootScope) {
      var link = {
        me: null,
        state: {},
        connId: null,
        channels: {},
        positions: {},
        current: null,
        bot: null,
        reconnects: 0
      };
      var socket = null;
      var retryDelay = 500;
      var retryTimer = null;
      var lastViews = {};
      var resuming = null;
      var counter = 0;

      function setLink(state, detail) { links.set("chat", "chat /ws", state, detail); }

      // -- channel models ------------------------------------------------------------

      function toMessage(entry) {
        var pm = entry.pm_users || [];
        var text = entry.message && typeof entry.message.text === "string" ?
          entry.message.text : JSON.stringify(entry.message);
        return {
          key: "m" + (++counter),
          uuid: entry.uuid,
          user: entry.user,
          text: text,
          time: utcTime(entry.timestamp, clockTime),
          edited: !!entry.edited,
          pm_users: pm,
          to: pm.filter(function (u) { return u !== entry.user; }).join(", ") || entry.user,
          own: entry.user === link.me,
          bot: entry.user === link.bot
        };
      }

      function notice(text) {
        return {key: "n" + (++counter), notice: true, text: text, time: clockTime()};
      }

      function channelModel(name) {
        if (!link.channels[name]) {
          link.channels[name] = {messages: [], users: [], unread: 0};
        }
        return link.channels[name];
      }

      function showView(name, view, why) {
        var channel = channelModel(name);
        channel.messages = (view.history || []).map(toMessage);
        if (why) { channel.messages.push(notice(why)); }
        channel.users = view.users || [];
        if (view.epoch) { link.positions[name] = [view.epoch, view.last_offset || 0]; }
      }

      function addMessage(name, message) {
        var channel = channelModel(name);
        var messages = channel.messages;
        for (var i = 0; i < messages.length; i++) {
          if (message.uuid && messages[i].uuid === message.uuid) { messages[i] = message; return; }
        }
        messages.push(message);
        if (messages.length > MAX_MESSAGES) { messages.shift(); }
        if (name !== link.current && !message.notice) { channel.unread += 1; }
      }

      function findMessage(uuid) {
        for (var name in link.channels) {
          var messages = link.channels[name].messages;
          for (var i = 0; i < messages.length; i++) {
            if (messages[i].uuid === uuid) { return {list: messages, index: i}; }
          }
        }
        return null;
      }

      function setUserState(name, user, state) {
        (channelModel(name).users || []).forEach(function (u) {
          if (u.user === user) { u.state = state; }
        });
        if (user === link.me) { link.state = state; }
      }

      // -- frames ------------------------------------------------------------------------

      function onFrame(frame) {
        var name = frame.channel;
        if (frame.type === "resume_failed") {
          var view = lastViews[name];
          if (resuming) { resuming.failed += 1; }
          eventLog.add("chat", "#" + (name || "private") + ": history no longer reached back (" +
                       frame.reason + "); showing what the server has now", "warn");
          if (view && link.channels[name]) {
            showView(name, view, "history no longer reached back (" + frame.reason +
                     "): this is what the server has now");
          }
          return;
        }
        if (frame.offset !== undefined && frame.epoch) {
          link.positions[name || ""] = [frame.epoch, frame.offset];
        }
        if (frame.catchup && resuming) { resuming.caught += 1; }
        var target = name || link.current;  // a global private message: shown here
        if (!target || !link.channels[target]) { return; }  // a channel left meanwhile
        if (frame.type === "message") {
          addMessage(target, toMessage(frame));
        } else if (frame.type === "message:edit") {
          var found = findMessage(frame.uuid);
          if (found) {
            var m = found.list[found.index];
            if (frame.message) { m.text = frame.message.text; }
            m.edited = true;
          }
        } else if (frame.type === "message:delete") {
          var gone = findMessage(frame.uuid);
          if (gone) { gone.list.splice(gone.index, 1); }
        } else if (frame.type === "presence") {
          var action = frame.message && frame.message.action;
          var channel = channelModel(name);
          if (frame.users && frame.users.length) {
            channel.users = frame.users;
          } else if (action === "parted") {
            channel.users = channel.users.filter(function (u) { return u.user !== frame.user; });
          }
          addMessage(name, notice(frame.user + (action === "joined" ? " joined" : " left")));
        } else if (frame.type === "user_state_change") {
          setUserState(name, frame.user, frame.message.state);
        }
      }

      function onFrames(frames) {
        frames.forEach(onFrame);
        if (resuming) {
          var parts = [];
          if (resuming.caught) { parts.push(resuming.caught + " missed frame(s) caught up"); }
          if (resuming.failed) { parts.push(resuming.failed + " stream(s) shown anew"); }
          eventLog.add("chat", "resumed: " + (parts.join(", ") || "nothing was missed"),
                       resuming.failed ? "warn" : "ok");
          resuming = null;
        }
        $rootScope.$applyAsync();
      }

      // -- the websocket -----------------------------------------------------------------

      function open() {
        var scheme = location.protocol === "https:" ? "wss://" : "ws://";
        var resume = JSON.stringify(link.positions);
        var url = scheme + location.host + "/ws?conn_id=" + encodeURIComponent(link.connId) +
          "&resume=" + encodeURIComponent(resume);
        var ws = new WebSocket(url);
        socket = ws;
        setLink(link.reconnects ? "reconnecting" : "connecting");
        ws.onopen = function () {
          retryDelay = 500;
          setLink("connected", "conn " + link.connId);
          if (link.reconnects) {
            resuming = {caught: 0, failed: 0};
            eventLog.add("chat", "websocket open again; resuming " +
                         Object.keys(link.positions).length + " stream(s) by offset", "info");
          }
        };
        ws.onmessage = function (event) {
          var frames;
          try { frames = JSON.parse(event.data); } catch (e) { return; }
          if (Array.isArray(frames)) { onFrames(frames); }
        };
        ws.onclose = function (event) {
          if (socket !== ws) { return; }
          socket = null;
          var why = event.code + (event.reason ? " " + event.reason : "");
          eventLog.add("chat", "websocket closed (" + why + "); reconnecting in " +
                       (retryDelay / 1000) + " s", "warn");
          setLink("reconnecting", "closed: " + why);
          schedule();
        };
      }

      function schedule() {
        $timeout.cancel(retryTimer);
        retryTimer = $timeout(reconnect, retryDelay);
        retryDelay = Math.min(retryDelay * 2, 5000);
      }

      function reconnect() {
        link.reconnects += 1;
        session().then(open, function (error) {
          eventLog.add("chat", "sign-in again failed (" + error.message + "); retrying in " +
                       (retryDelay / 1000) + " s", "warn");
          schedule();
        });
      }

      function session() {
        var names = Object.keys(link.channels);
        return demoApi.send("POST", "session", {
          username: link.me, conn_id: link.connId || undefined,
          channels: names.length ? names : undefined
        }).then(function (answer) {
          link.connId = answer.conn_id;
          link.state = answer.state;
          lastViews = answer.channels;
          return answer;
        });
      }

      // -- what the page does ---------------------------------------------------------

      link.signIn = function (name, bot) {
        link.me = name;
        link.bot = bot;
        return session().then(function (answer) {
          Object.keys(answer.channels).sort().forEach(function (channel) {
            showView(channel, answer.channels[channel]);
          });
          link.current = Object.keys(answer.channels).sort()[0] || null;
          eventLog.add("chat", "signed in as " + name, "ok");
          open();
          return answer;
        }, function (error) {
          link.me = null;
          throw error;
        });
      };

      link.join = function (name) {
        return demoApi.send("POST", "subscribe", {conn_id: link.connId, channel: name})
          .then(function (answer) {
            lastViews[name] = answer.view;
            showView(name, answer.view);
            link.current = name;
          });
      };

      link.leave = function (name) {
        return demoApi.send("POST", "unsubscribe", {conn_id: link.connId, channel: name})
          .then(function () {
            delete link.channels[name];
            delete link.positions[name];
            if (link.current === name) { link.current = Object.keys(link.channels).sort()[0] || null; }
          });
      };

      link.send = function (channel, text, to) {
        return demoApi.send("POST", "message",
                            {conn_id: link.connId, channel: channel, text: text, to: to || undefined});
      };
      link.edit = function (uuid, text) {
        return demoApi.send("PATCH", "message", {conn_id: link.connId, uuid: uuid, text: text});
      };
      link.remove = function (uuid) {
        return demoApi.send("DELETE", "message", {conn_id: link.connId, uuid: uuid});
      };
      link.setStatus = function (status) {
        return demoApi.send("POST", "status", {conn_id: link.connId, status: status});
      };

      setLink("off", "not signed in");
      return link;
    }]);

  demo.controller("ChatCtrl", ["chatLink", "demoConfig", function (chatLink, demoConfig) {
    var vm = this;
    vm.config = {available: true};
    vm.form = {name: "", text: "", join: ""};
    vm.link = chatLink;
    vm.to = null;
    vm.error = null;
    vm.statuses = [];

    demoConfig.then(function (config) {
      vm.config = config.chat;
      vm.statuses = config.chat.statuses;
      vm.bot = config.chat.bot;
    });

    Object.defineProperty(vm, "me", {get: function () { return chatLink.connId ? chatLink.me : null; }});
    Object.defineProperty(vm, "channels", {get: function () { return chatLink.channels; }});
    Object.defineProperty(vm, "current", {get: function () { return chatLink.current; }});

    function failed(error) { vm.error = error.message; }
    function ok() { vm.error = null; }

    vm.channelNames = function () { return Object.keys(chatLink.channels).sort(); };

    vm.signIn = function () {
      var name = (vm.form.name || "").trim();
      if (!name) { return; }
      chatLink.signIn(name, vm.bot).then(function (answer) {
        vm.status = answer.state.status || vm.statuses[0];
        ok();
      }, failed);
    };
    vm.select = function (name) {
      chatLink.current = name;
      chatLink.channels[name].unread = 0;
      vm.to = null;
    };
    vm.join = function () {
      var name = (vm.form.join || "").trim();
      if (!name) { return; }
      chatLink.join(name).then(function () { vm.form.join = ""; vm.to = null; ok(); }, failed);
    };
    vm.leave = function (name) { chatLink.leave(name).then(ok, failed); };
    vm.privateTo = function (user) { vm.to = user; };
    vm.send = function () {
      var text = vm.form.text;
      if (!text || !text.trim() || !chatLink.current) { return; }
      chatLink.send(chatLink.current, text, vm.to).then(function () {
        vm.form.text = "";
        ok();
      }, failed);
    };
    vm.startEdit = function (m) { m.draft = m.text; m.editing = true; };
    vm.saveEdit = function (m) {
      chatLink.edit(m.uuid, m.draft).then(function () { m.editing = false; ok(); }, failed);
    };
    vm.remove = function (m) { chatLink.remove(m.uuid).then(ok, failed); };
    vm.setStatus = function () { chatLink.setStatus(vm.status).then(ok, failed); };
  }]);
})();
