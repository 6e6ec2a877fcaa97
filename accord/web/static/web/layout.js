// No page wider than the window (docs/accessibility.md): every table of the page that is not in a scroll box
// already gets one, named after its caption, so a wide table scrolls inside it instead of widening the page. A
// box takes keyboard focus (tabindex=0) while it has something to scroll, so keyboard users can scroll it too.
(function () {
  "use strict";
  function fit() {
    document.querySelectorAll(".table-scroll[data-wrapped]").forEach(function (box) {
      if (box.scrollWidth > box.clientWidth + 1) {
        box.setAttribute("tabindex", "0");
      } else {
        box.removeAttribute("tabindex");
      }
    });
  }
  function wrap() {
    document.querySelectorAll("main table").forEach(function (table) {
      if (table.parentElement.classList.contains("table-scroll")) {
        return;
      }
      var box = document.createElement("div");
      var caption = table.querySelector("caption");
      box.className = "table-scroll";
      box.dataset.wrapped = "1";
      box.setAttribute("role", "region");
      box.setAttribute("aria-label", (caption && caption.textContent.trim()) || "Table");
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
