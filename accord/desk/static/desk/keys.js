// The desk's keyboard shortcuts (docs/accessibility.md). Single keys, so they follow WCAG 2.2's 2.1.4: they act
// only when focus is not in a text field, a select or a dialog, never with Ctrl, Alt or Meta held (the screen
// readers' own keys), and the help dialog (?) turns them off for good in this browser (localStorage).
//
//   ?  this help          j / k  next / previous ticket in the queue      n  open the next ticket
//   x  select the focused ticket in the queue (for a bulk change)
//   r  reply box          s  status     p  priority     a  assign to me   u  back to the queue
//   Ctrl+Enter in the reply box sends it.
(function () {
  "use strict";
  var STORE = "accord.desk.shortcuts";
  var dialog = document.getElementById("shortcuts");
  var toggle = document.getElementById("shortcuts-enabled");

  function enabled() {
    try { return window.localStorage.getItem(STORE) !== "off"; } catch (e) { return true; }
  }

  function typing(el) {
    if (!el || el === document.body) { return false; }
    if (el.isContentEditable || el.closest("dialog[open]")) { return true; }
    var tag = el.tagName;
    if (tag === "TEXTAREA" || tag === "SELECT") { return true; }
    return tag === "INPUT" && !/^(checkbox|radio|button|submit|reset)$/.test(el.type);
  }

  function openHelp() {
    if (!dialog) { return; }
    if (toggle) { toggle.checked = enabled(); }
    if (typeof dialog.showModal === "function") { dialog.showModal(); } else { dialog.setAttribute("open", ""); }
  }

  // j / k move between the queue's tickets: focus goes to the next row's link, which Enter opens.
  function move(step) {
    var links = Array.prototype.slice.call(document.querySelectorAll("#queue tbody tr[data-ticket] a.ticket-link"));
    if (!links.length) { return; }
    var at = links.indexOf(document.activeElement);
    var next = at < 0 ? (step > 0 ? 0 : links.length - 1) : Math.min(links.length - 1, Math.max(0, at + step));
    links[next].focus();
    links[next].closest("tr").scrollIntoView({block: "nearest"});
  }

  // x toggles the selection (the bulk-change checkbox) of the queue row that holds the focus.
  function toggleRow() {
    var el = document.activeElement;
    var row = el && el.closest ? el.closest("#queue tbody tr[data-ticket]") : null;
    var box = row ? row.querySelector("input.select-ticket") : null;
    if (!box) { return false; }
    box.checked = !box.checked;
    box.dispatchEvent(new Event("change", {bubbles: true}));
    return true;
  }

  // "Select all on this page", and the selected rows marked.
  var all = document.getElementById("select-page");
  var boxes = Array.prototype.slice.call(document.querySelectorAll("#queue input.select-ticket"));
  function mark() {
    boxes.forEach(function (b) { b.closest("tr").classList.toggle("selected", b.checked); });
    if (all) {
      var n = boxes.filter(function (b) { return b.checked; }).length;
      all.checked = n > 0 && n === boxes.length;
      all.indeterminate = n > 0 && n < boxes.length;
    }
  }
  if (all) {
    all.addEventListener("change", function () {
      boxes.forEach(function (b) { b.checked = all.checked; });
      mark();
    });
  }
  boxes.forEach(function (b) { b.addEventListener("change", mark); });

  // An element marked data-key="x": a link is followed, a field's control (or the element itself) is focused.
  function act(key) {
    var target = document.querySelector('[data-key="' + key + '"]');
    if (!target) { return false; }
    if (target.tagName === "A") { target.click(); return true; }
    var control = target.matches("input, select, textarea, button") ? target : target.querySelector("input, select, textarea, button");
    (control || target).focus();
    return true;
  }

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.isComposing) { return; }
    var el = document.activeElement;
    // Ctrl+Enter (Cmd+Enter) in a text box sends its form: no hunting for the button.
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && el && el.tagName === "TEXTAREA" && el.form) {
      event.preventDefault();
      if (typeof el.form.requestSubmit === "function") { el.form.requestSubmit(); } else { el.form.submit(); }
      return;
    }
    if (event.ctrlKey || event.altKey || event.metaKey || typing(el) || !enabled()) { return; }
    var handled = true;
    if (event.key === "?") { openHelp(); }
    else if (event.key === "j") { move(1); }
    else if (event.key === "k") { move(-1); }
    else if (event.key === "x") { handled = toggleRow(); }
    else { handled = act(event.key); }
    if (handled) { event.preventDefault(); }
  });

  var opener = document.getElementById("shortcuts-open");
  if (opener) { opener.addEventListener("click", openHelp); }
  if (toggle) {
    toggle.addEventListener("change", function () {
      try { window.localStorage.setItem(STORE, toggle.checked ? "on" : "off"); } catch (e) { /* private mode */ }
    });
  }

  // After an action the ticket page says what happened (#action-done): focus goes there, so a screen reader
  // reads it and the next Tab continues from the top of the ticket.
  var done = document.getElementById("action-done");
  if (done) { done.focus(); }
})();
