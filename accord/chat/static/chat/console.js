// The agents' chat console (/chat/console/): open chats, one conversation at a time, typing indicators, canned
// replies and transfer; its WebSocket pings every 20 s, which is what "an agent is online" means. What changed
// is said in a polite live region (#chat-news, the last five lines), once: a new chat, a visitor writing in a
// chat that is not the one open; never the pings or the reconnection timer (docs/accessibility.md).
(function () {
  "use strict";
  var list = document.getElementById("chat-list"), thread = document.getElementById("chat-thread");
  var form = document.getElementById("chat-reply"), text = document.getElementById("chat-text");
  var typing = document.getElementById("chat-typing"), state = document.getElementById("chat-state");
  var canned = document.getElementById("chat-canned"), transfer = document.getElementById("chat-transfer");
  var news = document.getElementById("chat-news");
  var current = null, socket = null, typingSent = 0, pending = {}, references = {};
  function say(text) {
    var line = document.createElement("p");
    line.className = "notice live-line"; line.textContent = text;
    news.appendChild(line);
    while (news.children.length > 5) { news.removeChild(news.firstElementChild); }
  }
  function li(m) {
    var e = document.createElement("p");
    e.dataset.id = m.id || ""; e.className = "chat-" + (m.kind || "reply");
    var who = document.createElement("strong");
    who.textContent = (m.kind === "inbound" ? "Visitor" : (m.author || "You")) + ": ";
    e.appendChild(who); e.appendChild(document.createTextNode(m.text));
    return e;
  }
  function addChat(c) {
    if (document.getElementById("chat-" + c.ticket)) { return false; }
    references[c.ticket] = c.reference;
    var item = document.createElement("li"), b = document.createElement("button");
    item.id = "chat-" + c.ticket; b.type = "button"; b.className = "link";
    b.textContent = c.reference + " · " + c.visitor + (c.known ? " (known)" : "");
    b.addEventListener("click", function () { join(c.ticket); });
    item.appendChild(b); list.appendChild(item);
    return true;
  }
  function join(ticket) {
    current = ticket; thread.innerHTML = ""; form.hidden = false;
    socket.send(JSON.stringify({type: "join", ticket: ticket}));
  }
  function connect() {
    socket = new WebSocket(location.origin.replace(/^http/, "ws") + "/ws/chat/agent/");
    socket.onopen = function () { state.textContent = "Online: visitors can start chats."; };
    socket.onclose = function () { state.textContent = "Offline: reconnecting…"; setTimeout(connect, 2000); };
    socket.onmessage = function (ev) {
      var f = JSON.parse(ev.data);
      if (f.type === "chats") { f.chats.forEach(addChat); }
      else if (f.type === "new") { if (addChat(f)) { say("New chat " + f.reference + " from " + f.visitor + "."); } }
      else if (f.type === "activity" && f.ticket !== current && references[f.ticket]) {
        say("New message in chat " + references[f.ticket] + ".");
      }
      else if (f.type === "joined" && f.ticket === current) {
        f.messages.forEach(function (m) { thread.appendChild(li(m)); });
        canned.innerHTML = "<option value=''>Insert a canned reply…</option>";
        f.canned.forEach(function (c) { var o = document.createElement("option"); o.value = c.text; o.textContent = c.title; canned.appendChild(o); });
      } else if (f.type === "message" && f.ticket === current) {
        if (!thread.querySelector('[data-id="' + f.id + '"]')) { thread.appendChild(li(f)); }
        typing.textContent = "";
      } else if (f.type === "typing" && f.ticket === current) {
        typing.textContent = "The visitor is typing…"; setTimeout(function () { typing.textContent = ""; }, 4000);
      } else if (f.type === "ack") { delete pending[f.client_id]; }
      else if (f.type === "transferred") { state.textContent = "Chat " + f.ticket + " transferred to " + f.to + " by " + f.by + "."; }
      else if (f.type === "error") { state.textContent = f.message; }
    };
  }
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    if (!text.value.trim() || current === null) { return; }
    var a = new Uint8Array(12); crypto.getRandomValues(a);
    var cid = Array.prototype.map.call(a, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
    pending[cid] = text.value;
    socket.send(JSON.stringify({type: "message", ticket: current, text: text.value, client_id: cid}));
    text.value = "";
  });
  text.addEventListener("input", function () {
    if (current !== null && Date.now() - typingSent > 2000) { typingSent = Date.now(); socket.send(JSON.stringify({type: "typing", ticket: current})); }
  });
  canned.addEventListener("change", function () { if (canned.value) { text.value += canned.value; canned.value = ""; text.focus(); } });
  transfer.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var to = document.getElementById("chat-transfer-to").value.trim();
    if (to && current !== null) { socket.send(JSON.stringify({type: "transfer", ticket: current, to: to})); }
  });
  setInterval(function () { if (socket && socket.readyState === 1) { socket.send(JSON.stringify({type: "ping"})); } }, 20000);
  connect();
}());
