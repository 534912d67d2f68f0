// The console's own script, besides htmx (static/vendor/). Pages work without it; it only spares
// users two surprises. No inline script anywhere: the pages' Content-Security-Policy forbids them.
(function () {
  "use strict";

  // A number field holding text the browser cannot read as a number is sent empty, which the API
  // would call "required": say what is wrong beside the field instead, and send nothing.
  function unreadableNumber(form) {
    var inputs = form.querySelectorAll("input[type=number]");
    for (var i = 0; i < inputs.length; i++) {
      if (inputs[i].validity && inputs[i].validity.badInput) {
        return inputs[i];
      }
    }
    return null;
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var bad = unreadableNumber(form);
    if (bad) {
      event.preventDefault();
      var error = document.getElementById(bad.id + "-error");
      if (error) {
        error.textContent = "Not a number: type digits only.";
        error.hidden = false;
      }
      bad.setAttribute("aria-invalid", "true");
      bad.focus();
      return;
    }
    // One submission per form while the next page loads: a double click sends it once. (The
    // server also takes a create form's one-time token once, whatever the browser does.)
    if (form.getAttribute("data-sent") === "true") {
      event.preventDefault();
      return;
    }
    form.setAttribute("data-sent", "true");
    window.setTimeout(function () { form.removeAttribute("data-sent"); }, 10000);
  });

  // Back to a page from the browser's cache: its forms can be sent again.
  window.addEventListener("pageshow", function () {
    var sent = document.querySelectorAll("form[data-sent]");
    for (var i = 0; i < sent.length; i++) {
      sent[i].removeAttribute("data-sent");
    }
  });
})();
