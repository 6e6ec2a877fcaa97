// A counter under every text box with a limit (data-limit), counting as the server counts (characters, a line
// break once), never cutting anything: no maxlength, so pasted text is kept whole and the limit is only said.
(function () {
  "use strict";
  var number = new Intl.NumberFormat("en");
  document.querySelectorAll("textarea[data-limit]").forEach(function (box) {
    var limit = Number(box.getAttribute("data-limit"));
    var out = document.createElement("span");
    out.className = "counter muted";
    out.id = box.id + "_count";
    out.setAttribute("aria-live", "polite");
    box.insertAdjacentElement("afterend", out);
    var show = function () {
      var n = Array.from(box.value).length;
      var text = number.format(n) + " of " + number.format(limit) + " characters";
      if (n > limit) {
        text += ": " + number.format(n - limit) + " too many";
      }
      out.textContent = text;
      out.classList.toggle("errors", n > limit);
    };
    box.addEventListener("input", show);
    show();
  });
})();
