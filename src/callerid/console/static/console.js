// callerid console: the only script of our own (the Content-Security-Policy allows no inline script).
// Pages work without it; it adds the CSRF header to htmx requests, the phone menu button and copy buttons.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function announce(message) {
    var region = document.getElementById("announcer");
    if (!region) return;
    region.textContent = "";
    window.setTimeout(function () { region.textContent = message; }, 50);
  }

  // Every htmx request carries the session's CSRF token, like the hidden field of a plain form post.
  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRF-Token"] = csrfToken();
  });

  document.addEventListener("click", function (event) {
    var target = event.target instanceof Element ? event.target : null;
    if (!target) return;

    var menu = target.closest(".menu-button");
    if (menu) {
      var nav = document.getElementById(menu.getAttribute("aria-controls"));
      var open = menu.getAttribute("aria-expanded") !== "true";
      menu.setAttribute("aria-expanded", open ? "true" : "false");
      if (nav) nav.classList.toggle("open", open);
      return;
    }

    var copy = target.closest("[data-copy]");
    if (copy) {
      var value = copy.getAttribute("data-copy");
      var done = function () {
        var label = copy.textContent;
        copy.textContent = "Copied";
        announce("Copied to the clipboard");
        window.setTimeout(function () { copy.textContent = label; }, 2000);
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(value).then(done, function () { announce("Copy failed: select the text instead"); });
      } else {
        // Plain http on another host than localhost has no clipboard API: select the value for the user.
        var code = copy.parentElement && copy.parentElement.querySelector("code");
        if (code) {
          var range = document.createRange();
          range.selectNodeContents(code);
          var selection = window.getSelection();
          selection.removeAllRanges();
          selection.addRange(range);
          announce("Selected: press Ctrl+C to copy");
        }
      }
    }
  });

  // After an htmx swap, move focus to a result that asks for it, so keyboard and screen-reader users follow.
  document.addEventListener("htmx:afterSwap", function (event) {
    var focus = event.detail.target.querySelector("[data-focus]");
    if (focus) focus.focus();
  });
})();

// --- numbers: a "select every number on this page" box over a table of checkboxes (hidden without JavaScript) ---
(function () {
  "use strict";
  document.querySelectorAll("[data-select-all]").forEach(function (box) { box.hidden = false; });
  document.addEventListener("change", function (event) {
    var box = event.target instanceof Element ? event.target.closest("[data-select-all]") : null;
    if (!box || !box.form) return;
    var name = box.getAttribute("data-select-all");
    box.form.querySelectorAll('input[type="checkbox"][name="' + name + '"]').forEach(function (item) {
      item.checked = box.checked;
    });
  });
})();

// --- surveys: a question's choices show only for choice answers; focus follows a question moved or added by htmx ---
(function () {
  "use strict";
  document.addEventListener("change", function (event) {
    var select = event.target instanceof Element ? event.target.closest("[data-kind-select]") : null;
    var question = select && select.closest(".question");
    if (question) question.setAttribute("data-kind", select.value);
  });
  document.addEventListener("htmx:afterSettle", function () {
    var focus = document.querySelector("#questions [data-focus]");
    if (focus) {
      focus.removeAttribute("data-focus");
      focus.focus();
    }
  });
})();
