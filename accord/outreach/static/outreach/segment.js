// The segment form's live count: as the filter is typed, POST it to /api/v1/segments/count/ (the session's CSRF
// token in the header) and say how many contacts match, or why the filter cannot be used yet.
(function () {
  "use strict";
  var spec = document.getElementById("id_spec");
  var out = document.getElementById("segment-count");
  var form = document.getElementById("segment-form");
  if (!spec || !out || !form) { return; }
  var timer = null;
  var asked = 0;
  function say(text) { out.textContent = text; }
  function count() {
    var text = spec.value.trim();
    var parsed;
    try { parsed = text ? JSON.parse(text) : {}; } catch (e) { say("Not JSON yet: " + e.message); return; }
    var mine = ++asked;
    var token = form.querySelector("input[name=csrfmiddlewaretoken]").value;
    fetch(out.getAttribute("data-count-url"), {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": token},
      body: JSON.stringify({spec: parsed})
    }).then(function (r) { return r.json().then(function (body) { return {ok: r.ok, body: body}; }); })
      .then(function (answer) {
        if (mine !== asked) { return; }  // a later keystroke asked again
        if (answer.ok) {
          var n = answer.body.count;
          say(n.toLocaleString("en") + (n === 1 ? " contact matches now." : " contacts match now."));
        } else {
          var fields = (answer.body.error && answer.body.error.fields) || {};
          say("Cannot count: " + ((fields.spec || [])[0] || (answer.body.error || {}).message || "refused"));
        }
      })
      .catch(function () { if (mine === asked) { say("Cannot count right now."); } });
  }
  spec.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(count, 400);
  });
})();
