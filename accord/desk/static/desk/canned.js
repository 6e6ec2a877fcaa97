// Canned replies on the ticket page: the chosen reply (its text already filled for this ticket by the server)
// goes into the reply box at the cursor, and focus goes to the box so the agent can edit and send.
(function () {
  "use strict";
  var select = document.getElementById("canned-select");
  var button = document.getElementById("canned-insert");
  var box = document.querySelector("#reply-form textarea");
  if (!select || !button || !box) { return; }
  var touched = false;  // until the agent has been in the box, a reply goes after what is there
  box.addEventListener("focus", function () { touched = true; });
  button.addEventListener("click", function () {
    var option = select.options[select.selectedIndex];
    if (!option) { return; }
    var text = option.getAttribute("data-text") || "";
    var start = box.selectionStart, end = box.selectionEnd, value = box.value;
    if (!touched || typeof start !== "number") { start = end = value.length; }
    box.value = value.slice(0, start) + text + value.slice(end);
    box.focus();
    var caret = start + text.length;
    box.setSelectionRange(caret, caret);
    box.dispatchEvent(new Event("input", {bubbles: true}));  // the length counter (limits.js) follows
  });
})();
