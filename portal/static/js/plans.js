/*
 * The payment-plan builder (portal/templates/plans/new.html): the schedule follows what
 * the customer types. Without JavaScript, "Show the schedule" asks the server for the
 * same page with the schedule; with it, the form is sent (as for that button) to the
 * same address with `fragment=1` after each change, and the server's preview replaces
 * the region marked aria-live. Every number comes from the server; this script computes
 * none, and nothing it sends is written.
 */
(function () {
  "use strict";

  var DELAY_MS = 350;

  function setUp(form) {
    var region = document.getElementById("plan-preview");
    var url = form.dataset.previewUrl;
    if (!region || !url || !window.fetch || !window.FormData) {
      return;
    }
    var timer = null;
    var latest = 0;

    function refresh() {
      var data = new FormData(form);
      data.append("preview", "1");
      var reason = document.getElementById("reason");
      if (reason) {
        data.set("reason", reason.value);
      }
      var ticket = ++latest;
      region.setAttribute("aria-busy", "true");
      fetch(url, {
        method: "POST",
        body: data,
        credentials: "same-origin",
        headers: { "X-Requested-With": "fetch" },
      })
        .then(function (response) {
          return response.ok ? response.text() : null;
        })
        .then(function (html) {
          if (ticket !== latest) {
            return; // a later change is on its way
          }
          region.removeAttribute("aria-busy");
          if (html !== null) {
            region.innerHTML = html;
          }
        })
        .catch(function () {
          region.removeAttribute("aria-busy"); // the button still asks the server
        });
    }

    function later() {
      if (timer) {
        window.clearTimeout(timer);
      }
      timer = window.setTimeout(refresh, DELAY_MS);
    }

    form.addEventListener("input", later);
    form.addEventListener("change", later);
    refresh();
  }

  var form = document.getElementById("plan-builder");
  if (form) {
    setUp(form);
  }
})();
