// Accord's live-chat widget: one <script src=".../static/chat/widget.js" async></script> on any page of an allowed
// origin (docs/chat.md). No cookie: the chat's token and any message not yet acknowledged are kept in this tab's
// sessionStorage, so a reload or a dropped connection reconnects and resends, and nothing typed is lost.
// Options on the script tag: data-accord (Accord's base URL; default: where this script came from), and for a
// visitor the host site knows: data-visitor-id, data-visitor-ts, data-visitor-sig (HMAC, see docs/chat.md).
(function () {
  "use strict";
  var script = document.currentScript;
  var base = (script && script.dataset.accord) || (script ? new URL(script.src).origin : location.origin);
  var KEY = "accord-chat:" + base;
  var state = JSON.parse(sessionStorage.getItem(KEY) || "null") || {pending: [], last: 0};
  state.last = 0;  // a new page shows the whole conversation; within a page, a reconnect asks only for what it missed
  var socket = null, retry = 500, typingSent = 0, seen = {};

  function save() { sessionStorage.setItem(KEY, JSON.stringify(state)); }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text) { e.textContent = text; }
    return e;
  }
  function id() {
    var a = new Uint8Array(12); crypto.getRandomValues(a);
    return Array.prototype.map.call(a, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  // Focus of its own on every control (the host page's styles, or none, must not decide whether it shows): the
  // ring of Accord's pages, set off from the blue button by a white gap.
  var focusStyle = el("style", {}, "#accord-chat :focus-visible{outline:3px solid #1d4ed8;outline-offset:2px;" +
    "box-shadow:0 0 0 2px #fff}");
  document.head.appendChild(focusStyle);
  var root = el("div", {id: "accord-chat", style: "position:fixed;right:16px;bottom:16px;z-index:2147483000;font:14px/1.4 system-ui,sans-serif;color:#1b1f24"});
  var toggle = el("button", {type: "button", id: "accord-chat-open", "aria-expanded": "false", style: "background:#1d4ed8;color:#fff;border:0;border-radius:20px;padding:10px 16px;min-height:44px"}, "Chat with us");
  var panel = el("section", {id: "accord-chat-panel", "aria-label": "Live chat", hidden: "", style: "width:min(340px,calc(100vw - 32px));background:#fff;border:1px solid #8a94a3;border-radius:10px;padding:12px;margin-bottom:8px;box-shadow:0 4px 16px rgba(0,0,0,.2)"});
  var status = el("p", {id: "accord-chat-status", role: "status", style: "margin:0 0 8px;color:#374151"});
  var log = el("div", {id: "accord-chat-log", role: "log", "aria-label": "Messages", tabindex: "0", style: "margin:0 0 8px;padding:0;max-height:260px;overflow-y:auto"});
  var typing = el("p", {id: "accord-chat-typing", "aria-live": "polite", style: "margin:0;min-height:1.4em;color:#374151;font-size:12px"});
  var pre = el("form", {id: "accord-chat-form"});
  function field(name, label, type) {
    var wrap = el("p", {style: "margin:0 0 6px"}), lab = el("label", {for: "accord-chat-" + name, style: "display:block"}, label);
    var input = el(type === "textarea" ? "textarea" : "input", {id: "accord-chat-" + name, name: name, required: "", style: "width:100%;box-sizing:border-box;padding:6px"});
    if (type !== "textarea") { input.type = type; }
    wrap.appendChild(lab); wrap.appendChild(input); pre.appendChild(wrap); return input;
  }
  var nameIn = field("name", "Your name", "text"), mailIn = field("email", "Your e-mail", "email"), firstIn = field("message", "How can we help?", "textarea");
  pre.appendChild(el("button", {type: "submit", style: "min-height:36px"}, "Start chat"));
  var talk = el("form", {id: "accord-chat-talk", hidden: ""});
  var textLabel = el("label", {for: "accord-chat-text", class: "accord-visually-hidden", style: "position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)"}, "Your message");
  var textIn = el("textarea", {id: "accord-chat-text", rows: "2", maxlength: "2000", style: "width:100%;box-sizing:border-box;padding:6px"});
  var send = el("button", {type: "submit", id: "accord-chat-send", style: "min-height:36px"}, "Send");
  var mailMe = el("button", {type: "button", id: "accord-chat-transcript", style: "min-height:36px;margin-left:6px"}, "E-mail me the transcript");
  [textLabel, textIn, send, mailMe].forEach(function (e) { talk.appendChild(e); });
  [status, log, typing, pre, talk].forEach(function (e) { panel.appendChild(e); });
  root.appendChild(panel); root.appendChild(toggle);

  function show(m) {
    if (m.id && seen[m.id]) { return; }
    if (m.id) { seen[m.id] = true; state.last = Math.max(state.last, m.id); save(); }
    var who = m.kind === "inbound" ? "You" : (m.author || "Support");
    var li = el("p", {"data-id": m.id || "", "data-client": m.client_id || "", style: "margin:4px 0"});
    li.appendChild(el("strong", {}, who + ": "));
    li.appendChild(document.createTextNode(m.text));  // text, never markup
    if (m.client_id) {
      var old = log.querySelector('[data-client="' + m.client_id + '"]');
      if (old) { old.replaceWith(li); return; }
    }
    log.appendChild(li);
    log.scrollTop = log.scrollHeight;
  }
  function pendingShown(p) {
    if (!log.querySelector('[data-client="' + p.client_id + '"]')) {
      show({client_id: p.client_id, kind: "inbound", text: p.text + " (sending…)"});
    }
  }
  function flush() {
    if (!socket || socket.readyState !== 1 || !state.ready) { return; }
    state.pending.forEach(function (p) { socket.send(JSON.stringify({type: "message", text: p.text, client_id: p.client_id})); });
  }
  function connect() {
    var url = base.replace(/^http/, "ws") + "/ws/chat/visitor/";
    socket = new WebSocket(url);
    state.ready = false;
    socket.onopen = function () { socket.send(JSON.stringify({type: "hello", token: state.token, after: state.last})); };
    socket.onmessage = function (ev) {
      var f = JSON.parse(ev.data);
      if (f.type === "welcome") {
        retry = 500; state.ready = true; status.textContent = "Chat " + f.reference + ": connected.";
        f.messages.forEach(show); state.pending.forEach(pendingShown); flush();
      } else if (f.type === "message") { show(f); typing.textContent = ""; }
      else if (f.type === "ack") {
        state.pending = state.pending.filter(function (p) { return p.client_id !== f.client_id; }); save();
        var li = log.querySelector('[data-client="' + f.client_id + '"]');
        if (li) { li.lastChild.textContent = li.lastChild.textContent.replace(" (sending…)", ""); li.dataset.id = f.id; seen[f.id] = true; }
      } else if (f.type === "typing") { typing.textContent = "An agent is typing…"; setTimeout(function () { typing.textContent = ""; }, 4000); }
      else if (f.type === "transcript") { status.textContent = f.sent ? "The transcript is on its way to your inbox." : "No address to send it to."; }
      else if (f.type === "ended") { status.textContent = "The chat has ended."; }
      else if (f.type === "error") {
        if (f.code === "slow_down") { setTimeout(flush, 2000); }
        else if (f.code === "unknown_chat") { sessionStorage.removeItem(KEY); state = {pending: [], last: 0}; status.textContent = f.message; talk.hidden = true; pre.hidden = false; }
        else { status.textContent = f.message; if (f.client_id) { state.pending = state.pending.filter(function (p) { return p.client_id !== f.client_id; }); save(); } }
      }
    };
    socket.onclose = function (ev) {
      state.ready = false;
      if (!state.token || ev.code === 4404) { return; }
      status.textContent = "Connection lost; reconnecting… (what you type is kept)";
      setTimeout(connect, retry); retry = Math.min(retry * 2, 8000);
    };
  }
  toggle.addEventListener("click", function () {
    var open = panel.hidden; panel.hidden = !open; toggle.setAttribute("aria-expanded", String(open));
    (open ? (state.token ? textIn : nameIn) : toggle).focus();
  });
  pre.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var body = {name: nameIn.value, email: mailIn.value, message: firstIn.value};
    if (script && script.dataset.visitorId) { body.identity = {id: script.dataset.visitorId, ts: script.dataset.visitorTs, sig: script.dataset.visitorSig}; }
    status.textContent = "Starting…";
    fetch(base + "/chat/start/", {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body), credentials: "omit"})
      .then(function (r) { return r.json().then(function (j) { return [r.status, j]; }); })
      .then(function (res) {
        var j = res[1];
        if (res[0] >= 400) { status.textContent = (j.error && j.error.message) || "Could not start the chat."; return; }
        if (j.offline) { status.textContent = j.message; pre.hidden = true; return; }
        state.token = j.token; state.reference = j.reference; save();
        status.textContent = "Chat " + j.reference + (j.identity ? " (" + j.identity + ")" : "") + ": connecting…";
        pre.hidden = true; talk.hidden = false; textIn.focus(); connect();
      })
      .catch(function () { status.textContent = "Could not reach us; please try again."; });
  });
  talk.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var text = textIn.value.trim();
    if (!text) { return; }
    var p = {client_id: id(), text: text};
    state.pending.push(p); save(); pendingShown(p); textIn.value = ""; flush();
  });
  textIn.addEventListener("input", function () {
    if (socket && socket.readyState === 1 && state.ready && Date.now() - typingSent > 2000) { typingSent = Date.now(); socket.send(JSON.stringify({type: "typing"})); }
  });
  mailMe.addEventListener("click", function () { if (socket && socket.readyState === 1) { socket.send(JSON.stringify({type: "transcript"})); } });
  function boot() {
    document.body.appendChild(root);
    if (state.token) {  // a chat in progress (a reload, another page of the site): open where it was
      pre.hidden = true; talk.hidden = false; panel.hidden = false; toggle.setAttribute("aria-expanded", "true"); connect();
    }
  }
  if (document.body) { boot(); } else { document.addEventListener("DOMContentLoaded", boot); }
}());
