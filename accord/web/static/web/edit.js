// The staff UI's editing pages: add rows to a contact's addresses and numbers, copy a just-issued API key.
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    var add = event.target.closest("button[data-add]");
    if (add) {
      var prefix = add.getAttribute("data-add");
      var set = document.getElementById(prefix + "-rows");
      var total = document.getElementById("id_" + prefix + "-TOTAL_FORMS");
      var template = set.querySelector("template.empty-row");
      var index = parseInt(total.value, 10);
      var holder = document.createElement("div");
      holder.innerHTML = template.innerHTML.replace(/__prefix__/g, String(index));
      var row = holder.firstElementChild;
      set.querySelector(".point-rows").appendChild(row);
      total.value = String(index + 1);
      var input = row.querySelector("input[type=email], input[type=tel], input[type=text]");
      if (input) { input.focus(); }
      return;
    }
    var copy = event.target.closest("button[data-copy]");
    if (copy) {
      var field = document.getElementById(copy.getAttribute("data-copy"));
      var status = document.getElementById("copy-status");
      var done = function () { status.textContent = "Copied to the clipboard."; };
      var fallback = function () {
        field.focus();
        field.select();
        try {
          if (document.execCommand("copy")) { done(); return; }
        } catch (e) { /* fall through to the message */ }
        status.textContent = "Select the key and copy it with Ctrl+C (or Cmd+C).";
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(field.value).then(done, fallback);
      } else {
        fallback();
      }
    }
  });
})();
