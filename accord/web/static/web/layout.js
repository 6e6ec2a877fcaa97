// No page wider than the window (docs/accessibility.md): every table of the page that is not in a scroll box
// already gets one, so a wide table scrolls inside it instead of widening the page. While a box has something to
// scroll it is a named region that takes keyboard focus (tabindex=0), so keyboard users can scroll it too; its
// name says it scrolls, so it never repeats the name of the section around it (axe's landmark-unique rule). A
// box with nothing to scroll is a plain div: no landmark for a screen reader to step through.
(function () {
  "use strict";
  function fit() {
    document.querySelectorAll(".table-scroll[data-wrapped]").forEach(function (box) {
      if (box.scrollWidth > box.clientWidth + 1) {
        box.setAttribute("tabindex", "0");
        box.setAttribute("role", "region");
        box.setAttribute("aria-label", box.dataset.name + " (table, scrolls sideways)");
      } else {
        box.removeAttribute("tabindex");
        box.removeAttribute("role");
        box.removeAttribute("aria-label");
      }
    });
  }
  function wrap() {
    var unnamed = 0;
    document.querySelectorAll("main table").forEach(function (table) {
      if (table.parentElement.classList.contains("table-scroll")) {
        return;
      }
      var box = document.createElement("div");
      var caption = table.querySelector("caption");
      box.className = "table-scroll";
      box.dataset.wrapped = "1";
      box.dataset.name = (caption && caption.textContent.trim()) || "Table " + (unnamed += 1);
      table.parentNode.insertBefore(box, table);
      box.appendChild(table);
    });
    fit();
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", wrap);
  } else {
    wrap();
  }
  window.addEventListener("resize", fit);
}());
