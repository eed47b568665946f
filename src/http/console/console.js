// keyward console: the copy buttons. Pages work without this script; it
// only shows the buttons it can serve. Served from the binary (CSP 'self').
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    var field = document.getElementById(button.getAttribute("data-copy"));
    var status = document.querySelector('[data-copy-status="' + button.getAttribute("data-copy") + '"]');
    if (!field) return;
    button.hidden = false;
    if (button.hasAttribute("autofocus")) button.focus();
    button.addEventListener("click", function () {
      var copied = function () {
        button.textContent = "Copied";
        if (status) status.textContent = "Copied to the clipboard.";
      };
      var fallback = function () {
        field.focus();
        field.select();
        try {
          if (document.execCommand("copy")) { copied(); return; }
        } catch (e) { /* fall through */ }
        if (status) status.textContent = "Select the text and copy it with your keyboard.";
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(field.value).then(copied, fallback);
      } else {
        fallback();
      }
    });
  });
});
