// Names for the fields Django's admin leaves without one (docs/accessibility.md): the inputs of a tabular
// inline's rows (their column's heading, then the row: "Target, row 2"), the date and time halves of a
// date-time field ("Created at, date"), select2's combobox (the label of the select it stands for), and the
// help icons that carry aria-label without a role. Run on load and again on each row "Add another" makes.
(function () {
  "use strict";
  var FIELDS = "input:not([type=hidden]), select, textarea";

  function text(el) { return el ? el.textContent.replace(/[:*\s]+$/, "").replace(/\s+/g, " ").trim() : ""; }

  function named(el) {
    if (el.getAttribute("aria-label") || el.getAttribute("aria-labelledby")) { return true; }
    if (el.id && document.querySelector('label[for="' + el.id + '"]')) { return true; }
    return !!el.closest("label");
  }

  function tabular(root) {
    root.querySelectorAll(".tabular table").forEach(function (table) {
      var heads = Array.prototype.map.call(table.querySelectorAll("thead th"), text);
      table.querySelectorAll("tbody tr").forEach(function (row, r) {
        Array.prototype.forEach.call(row.children, function (cell) {
          var col = Array.prototype.indexOf.call(row.children, cell);
          cell.querySelectorAll(FIELDS).forEach(function (el) {
            var head = heads[col] || (el.type === "checkbox" && /DELETE$/.test(el.name) ? "Delete" : "");
            if (head && !named(el)) { el.setAttribute("aria-label", head + ", row " + (r + 1)); }
          });
        });
      });
    });
  }

  function datetimes(root) {
    root.querySelectorAll("p.datetime").forEach(function (p) {
      var row = p.closest(".form-row, .fieldBox, div.flex-container") || p.parentElement;
      var label = text(row && row.querySelector("label"));
      var halves = p.querySelectorAll("input.vDateField, input.vTimeField");
      halves.forEach(function (el) {
        if (!named(el)) { el.setAttribute("aria-label", label + ", " + (el.classList.contains("vDateField") ? "date" : "time")); }
      });
    });
  }

  function widgets(root) {
    // select2 names its box by the text of the current choice, which is empty before one is made: name it by
    // the select's own label, then the choice.
    root.querySelectorAll(".select2-selection__rendered[id^=select2-][id$=-container]").forEach(function (shown) {
      var id = shown.id.slice("select2-".length, -"-container".length);
      var label = document.querySelector('label[for="' + id + '"]');
      var box = shown.closest(".select2-selection");
      if (!label || !box) { return; }
      if (!label.id) { label.id = id + "-label"; }
      box.setAttribute("aria-labelledby", label.id + " " + shown.id);
      shown.setAttribute("aria-labelledby", label.id);
    });
    root.querySelectorAll("span.help-tooltip[aria-label]:not([role])").forEach(function (icon) {
      icon.setAttribute("role", "img");
    });
  }

  function search(root) {
    var bar = root.querySelector("#searchbar");
    if (bar && !bar.getAttribute("aria-label")) { bar.setAttribute("aria-label", "Search"); }
  }

  function fix(root) { tabular(root); datetimes(root); widgets(root); search(root); }

  // The admin's own scripts draw select2 boxes and the two-list selects after the page loads, and rows when
  // "Add another" is clicked: fix again whenever the page changes (batched into one pass per frame).
  var pending = false;
  function soon() {
    if (pending) { return; }
    pending = true;
    window.requestAnimationFrame(function () { pending = false; fix(document); });
  }
  document.addEventListener("DOMContentLoaded", function () {
    fix(document);
    new MutationObserver(soon).observe(document.body, {childList: true, subtree: true});
  });
  window.addEventListener("load", soon);
})();
