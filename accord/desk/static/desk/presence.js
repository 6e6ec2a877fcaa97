// The collision notice: every few seconds the page tells the server this agent has the ticket open (and is
// writing a reply when the reply box holds text), and says in a polite live region who else has it open.
// It speaks only when that changes, so a screen reader hears events, not a timer (docs/accessibility.md).
(function () {
  "use strict";
  var region = document.getElementById("presence");
  if (!region || !window.fetch) { return; }
  var url = region.getAttribute("data-url");
  var poll = Math.max(1, parseFloat(region.getAttribute("data-poll")) || 10) * 1000;
  var token = document.querySelector("input[name=csrfmiddlewaretoken]");
  var box = document.querySelector("#reply-form textarea");
  var said = "";

  function ping() {
    var body = new URLSearchParams();
    body.set("replying", box && box.value.trim() ? "1" : "0");
    fetch(url, {method: "POST", body: body, credentials: "same-origin",
                headers: {"X-CSRFToken": token ? token.value : ""}})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) { return; }
        var text = data.text ? data.text + "." : "";
        if (text !== said) { region.textContent = text; region.className = text ? "notice live-line" : ""; said = text; }
      })
      .catch(function () { /* offline for a moment: try again next time */ })
      .then(function () { window.setTimeout(ping, poll); });
  }
  ping();
})();
