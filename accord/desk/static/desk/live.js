// The queue's live region (accord/desk/live.py): every few seconds, ask what came after the newest ticket and
// breach this page knows, and announce only that: "New ticket ACC-000042 from Acme: Payments fail." or
// "Breached: ACC-000040, first response." Each answer adds one line to a polite status region (older lines
// stay, the last five), so a screen reader reads the news once and never a ticking clock. The table is left
// alone under the agent's focus; a link offers the reload, and the tab's title counts what is new.
(function () {
  "use strict";
  var region = document.getElementById("queue-live");
  if (!region || !window.fetch) { return; }
  var reload = document.getElementById("queue-reload");
  var cursor = {ticket: region.dataset.ticket, breach: region.dataset.breach};
  var every = Math.max(1, parseFloat(region.dataset.poll) || 15) * 1000;
  var title = document.title;
  var fresh = 0;

  function list(items, total, say) {
    var words = items.map(say);
    if (total > items.length) { words.push("and " + (total - items.length) + " more"); }
    return words.join("; ");
  }

  function tell(answer) {
    var parts = [];
    if (answer.new.length) {
      parts.push((answer.new_total === 1 ? "New ticket " : answer.new_total + " new tickets: ") + list(
        answer.new, answer.new_total,
        function (t) { return t.reference + (t.account ? " from " + t.account : "") + ": " + t.subject; }) + ".");
    }
    if (answer.breached.length) {
      parts.push("Breached: " + list(answer.breached, answer.breached_total,
        function (b) { return b.reference + ", " + b.clock; }) + ".");
    }
    if (!parts.length) { return; }
    var line = document.createElement("p");
    line.className = "notice live-line";
    line.textContent = parts.join(" ");
    region.appendChild(line);
    while (region.children.length > 5) { region.removeChild(region.firstElementChild); }
    fresh += answer.new_total;
    if (fresh) { document.title = "(" + fresh + ") " + title; }
    if (reload) { reload.hidden = false; }
  }

  function poll() {
    if (document.visibilityState === "hidden") { return; }
    var url = region.dataset.url + "?ticket=" + encodeURIComponent(cursor.ticket) + "&breach=" +
      encodeURIComponent(cursor.breach);
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (answer) {
        if (!answer) { return; }
        cursor = answer.cursor;
        tell(answer);
      })
      .catch(function () { /* the next poll tries again; an outage is not news for the agent */ });
  }

  window.setInterval(poll, every);
})();
