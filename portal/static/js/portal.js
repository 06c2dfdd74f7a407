/*
 * Small enhancements for every page but the card page (which runs only its inventory,
 * portal/payments/inventory.py). Every page works without this file:
 * - after a refused form, focus moves to the error summary (autofocus does it too);
 * - on step 1 of paying, the total of the ticked invoices and how the amount typed will
 *   be applied (oldest due first) follow each tick and keystroke. Without JavaScript the
 *   "Update total" button asks the server for the same. The server computes every amount
 *   it charges; nothing here is sent to it.
 */
(function () {
  "use strict";

  function focusErrorSummary() {
    var summary = document.getElementById("error-summary");
    if (summary && document.activeElement !== summary) {
      summary.focus();
    }
  }

  function fill(template, values) {
    return template.replace(/%\((\w+)\)s/g, function (whole, name) {
      return Object.prototype.hasOwnProperty.call(values, name) ? values[name] : whole;
    });
  }

  function setUpPreview(form) {
    var messages;
    try {
      messages = JSON.parse(form.dataset.messages || "{}");
    } catch (error) {
      return;
    }
    var exponent = parseInt(form.dataset.exponent, 10) || 0;
    var formatter = new Intl.NumberFormat(form.dataset.locale || "en", {
      style: "currency",
      currency: form.dataset.currency,
      minimumFractionDigits: exponent,
      maximumFractionDigits: exponent,
    });
    var boxes = Array.prototype.slice.call(form.querySelectorAll("input[name=invoices]"));
    var amountInput = form.querySelector("input[name=amount]");
    var total = document.getElementById("pay-total");
    var split = document.getElementById("pay-split");
    var update = document.getElementById("update-total");
    if (update) {
      update.remove(); // the preview is live: Enter in the amount field now continues
    }

    function money(minor) {
      return formatter.format(minor / Math.pow(10, exponent));
    }

    // Major units typed as the server reads them ("120", "120.5", or "120,50" with no
    // more digits after the comma than the currency has), in minor units; null when it
    // is not such a number (the server then says what is wrong).
    function typedMinor() {
      var text = amountInput ? amountInput.value.trim() : "";
      if (text === "") {
        return undefined;
      }
      var comma = /^(\d+),(\d+)$/.exec(text);
      if (comma && comma[2].length <= exponent) {
        text = comma[1] + "." + comma[2];
      }
      var match = /^(\d+)(?:\.(\d*))?$/.exec(text);
      if (!match) {
        return null;
      }
      var fraction = (match[2] || "") + "0".repeat(exponent + 1);
      var minor = parseInt(match[1] + fraction.slice(0, exponent), 10);
      if (parseInt(fraction.charAt(exponent), 10) >= 5) {
        minor += 1; // half-up, as Money.from_decimal rounds
      }
      return minor;
    }

    function line(text) {
      var item = document.createElement("li");
      item.textContent = text;
      return item;
    }

    function render() {
      var ticked = boxes
        .filter(function (box) {
          return box.checked;
        })
        .map(function (box) {
          return {
            number: box.dataset.label,
            due: box.dataset.dueDate,
            payable: parseInt(box.dataset.payable, 10),
          };
        })
        .sort(function (a, b) {
          return a.due < b.due ? -1 : a.due > b.due ? 1 : a.number < b.number ? -1 : 1;
        });
      split.textContent = "";
      if (ticked.length === 0) {
        total.textContent = "—";
        var nothing = document.createElement("p");
        nothing.className = "pay-preview__intro";
        nothing.textContent = messages.nothing || "";
        split.appendChild(nothing);
        return;
      }
      var sum = ticked.reduce(function (acc, item) {
        return acc + item.payable;
      }, 0);
      total.textContent = money(sum);
      var typed = typedMinor();
      var minimum = parseInt(form.dataset.minimum, 10) || 0;
      var refused = typed !== undefined && (typed <= 0 || typed > sum || (typed < minimum && typed !== sum));
      if (typed === null || refused) {
        return; // not an amount that can be paid: "Continue" brings the server's reason
      }
      var remaining = typed === undefined ? sum : typed;
      var intro = document.createElement("p");
      intro.className = "pay-preview__intro";
      intro.textContent = fill(messages.intro || "", { amount: money(remaining) });
      var list = document.createElement("ul");
      list.className = "pay-preview__list";
      ticked.forEach(function (item) {
        var share = Math.min(remaining, item.payable);
        remaining -= share;
        var values = { number: item.number, amount: money(share), due: money(item.payable) };
        if (share === item.payable) {
          list.appendChild(line(fill(messages.full || "", values)));
        } else if (share > 0) {
          list.appendChild(line(fill(messages.part || "", values)));
        } else {
          list.appendChild(line(fill(messages.none || "", values)));
        }
      });
      split.appendChild(intro);
      split.appendChild(list);
    }

    boxes.forEach(function (box) {
      box.addEventListener("change", render);
    });
    if (amountInput) {
      amountInput.addEventListener("input", render);
    }
    render();
  }

  focusErrorSummary();
  var choose = document.getElementById("pay-choose");
  if (choose) {
    setUpPreview(choose);
  }
})();
