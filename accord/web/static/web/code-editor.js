// The YAML editor's keyboard: Tab and Shift+Tab indent and outdent by two spaces (YAML has no tab characters);
// Escape first, then Tab, leaves the text box, so the keyboard is never trapped (WCAG 2.1.2).
(function () {
  "use strict";
  var box = document.getElementById("yaml-text");
  if (!box) { return; }
  var escaped = false;
  var INDENT = "  ";
  box.addEventListener("keydown", function (event) {
    if (event.key === "Escape") { escaped = true; return; }
    if (event.key !== "Tab" || escaped || event.ctrlKey || event.altKey || event.metaKey) { escaped = false; return; }
    event.preventDefault();
    var value = box.value, start = box.selectionStart, end = box.selectionEnd;
    var lineStart = value.lastIndexOf("\n", start - 1) + 1;
    if (!event.shiftKey && start === end) {
      box.setRangeText(INDENT, start, end, "end");
    } else {
      var block = value.slice(lineStart, end);
      var lines = block.split("\n");
      var changed = lines.map(function (line) {
        if (!event.shiftKey) { return INDENT + line; }
        return line.indexOf(INDENT) === 0 ? line.slice(2) : line.replace(/^ /, "");
      }).join("\n");
      box.setRangeText(changed, lineStart, end, "select");
    }
    box.dispatchEvent(new Event("input", { bubbles: true }));
  });
  box.addEventListener("blur", function () { escaped = false; });
  // The Apply button applies the text that was checked: once the text changes, it must be checked again.
  var apply = document.getElementById("apply-button");
  var note = document.getElementById("apply-stale");
  if (apply) {
    var checkedText = box.value;
    var nothingToApply = apply.disabled;
    box.addEventListener("input", function () {
      var stale = box.value !== checkedText;
      apply.disabled = stale || nothingToApply;
      if (note) { note.hidden = !stale; }
    });
  }
}());
