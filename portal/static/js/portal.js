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
    return template.replace(/%\((\w+)\)[sd]/g, function (whole, name) {
      return Object.prototype.hasOwnProperty.call(values, name) ? values[name] : whole;
    });
  }

  function count(text, char) {
    return text.split(char).length - 1;
  }

  var SPACES = " \u00a0\u202f";
  var GROUPED = /^[1-9][0-9]{0,2}(?:[., \u00a0\u202f][0-9]{3})+$/;

  // The amount typed, in minor units, read by the rule of the server's reader
  // (portal/inputs.py, parse_amount_input: change both together): undefined when empty,
  // null when the server would refuse it or the script is not sure how it reads it (no
  // preview then, but a reason). `decimal` is the language's decimal mark, `signs` the
  // currency's signs that a pasted total may carry. On null, `why.problem` (when `why` is
  // given) says which of the server's reasons applies: "ambiguous" (with `text`, `small`
  // and `large`, the two readings in minor units), "negative", "decimals", "currency",
  // "large" or "invalid".
  function readAmount(typed, decimal, exponent, signs, why) {
    why = why || {};
    why.problem = "invalid";
    // trim() drops spaces and the byte-order mark; the rest of what the server drops
    // at the ends too: zero-width spaces and joiners, direction marks (inputs._EDGES)
    var text = typed.replace(/^[\s\ufeff\u200b\u200c\u200d\u200e\u200f\u2060]+|[\s\ufeff\u200b\u200c\u200d\u200e\u200f\u2060]+$/g, "");
    if (text === "") {
      return undefined;
    }
    if (text.length > 64) {
      return null;
    }
    var negative = /^[-\u2212]/.test(text);
    if (negative) {
      text = text.slice(1).trim();
    }
    var folded = text.toLowerCase();
    for (var i = 0; i < signs.length; i += 1) {
      var sign = signs[i].toLowerCase();
      if (folded.slice(0, sign.length) === sign) {
        text = text.slice(sign.length).trim();
        break;
      }
      if (folded.length >= sign.length && folded.slice(-sign.length) === sign) {
        text = text.slice(0, text.length - sign.length).trim();
        break;
      }
    }
    if (!/^[-\u2212]?[0-9., \u00a0\u202f]+$/.test(text)) {
      if (/\p{Sc}/u.test(text)) {
        why.problem = "currency"; // "€12" for an amount in dollars
      }
      return null; // letters
    }
    if (negative || /^[-\u2212]/.test(text)) {
      if (/[1-9]/.test(text)) {
        why.problem = "negative";
        return null;
      }
      text = text.replace(/^[-\u2212]/, "").trim(); // "-0" is zero, as the server reads it
    }
    var other = decimal === "," ? "." : ",";
    var hasSpace = /[ \u00a0\u202f]/.test(text);
    var decimals = count(text, decimal);
    var others = count(text, other);
    var mark = "";
    if (decimals && others) {
      mark = text.lastIndexOf(decimal) > text.lastIndexOf(other) ? decimal : other;
      if (count(text, mark) !== 1 || hasSpace) {
        return null;
      }
    } else if (decimals) {
      if (decimals > 1) {
        return null;
      }
      var tail = text.slice(text.indexOf(decimal) + 1);
      if (!hasSpace && tail.length === 3 && GROUPED.test(text) && exponent < 3 && !/[1-9]/.test(tail.slice(exponent))) {
        return ambiguous(text, decimal, exponent, why); // "1.000" USD in English: a dollar or a thousand
      }
      mark = decimal;
    } else if (others === 1) {
      var after = text.slice(text.indexOf(other) + 1);
      var grouping = !hasSpace && after.length === 3 && GROUPED.test(text);
      if (grouping && exponent >= 3) {
        return ambiguous(text, other, exponent, why); // "1.000" KWD: one dinar or a thousand
      }
      if (!grouping) {
        mark = other;
      }
    }
    var integer = text;
    var fraction = "";
    if (mark) {
      integer = text.slice(0, text.indexOf(mark));
      fraction = text.slice(text.indexOf(mark) + 1);
    }
    if (!/[0-9]/.test(integer + fraction) || (fraction && !/^[0-9]+$/.test(fraction))) {
      return null;
    }
    if (integer && !/^[0-9]+$/.test(integer)) {
      var kinds = integer.replace(/[0-9]/g, "");
      var mixed = kinds.split("").some(function (char) {
        return char !== kinds.charAt(0) && (SPACES.indexOf(char) < 0 || SPACES.indexOf(kinds.charAt(0)) < 0);
      });
      if (!GROUPED.test(integer) || mixed) {
        return null; // not groups of three, or two kinds of grouping mark
      }
    }
    if (/[1-9]/.test(fraction.slice(exponent))) {
      why.problem = "decimals"; // more decimals than the currency has
      return null;
    }
    var whole = integer.replace(/[^0-9]/g, "").replace(/^0+/, "");
    if (whole.length > 15) {
      why.problem = "large"; // beyond what any amount here is (and a safe integer)
      return null;
    }
    return parseInt(whole + (fraction + "0".repeat(exponent)).slice(0, exponent), 10) || 0;
  }

  // "1.000" (digits, one mark, three digits) read both ways, as inputs._ambiguous does.
  function ambiguous(text, mark, exponent, why) {
    var lead = text.slice(0, text.indexOf(mark));
    var after = text.slice(text.indexOf(mark) + 1);
    var unit = Math.pow(10, exponent);
    why.problem = "ambiguous";
    why.text = text;
    why.small = parseInt(lead, 10) * unit + (parseInt((after + "0".repeat(exponent)).slice(0, exponent), 10) || 0);
    why.large = parseInt(lead + after, 10) * unit;
    return null;
  }

  function setUpPreview(form) {
    var messages;
    try {
      messages = JSON.parse(form.dataset.messages || "{}");
    } catch (error) {
      return;
    }
    var exponent = parseInt(form.dataset.exponent, 10) || 0;
    var decimal = form.dataset.decimal === "," ? "," : ".";
    var signs;
    try {
      signs = JSON.parse(form.dataset.signs || "[]");
    } catch (error) {
      signs = [];
    }
    // Grouped as the server writes it (Babel): "1.062,75 US$" in Spanish too, where
    // CLDR's minimum grouping digits would otherwise write "1062,75 US$".
    var formatter = new Intl.NumberFormat(form.dataset.locale || "en", {
      style: "currency",
      currency: form.dataset.currency,
      minimumFractionDigits: exponent,
      maximumFractionDigits: exponent,
      useGrouping: "always",
    });
    var boxes = Array.prototype.slice.call(form.querySelectorAll("input[name=invoices]"));
    var amountInput = form.querySelector("input[name=amount]");
    var total = document.getElementById("pay-total");
    var split = document.getElementById("pay-split");
    var update = document.getElementById("update-total");
    if (update) {
      update.remove(); // the preview is live: Enter in the amount field now continues
    }

    // Minor units as an exact decimal string ("106275" -> "1062.75"): no float on the way.
    function money(minor) {
      var digits = String(minor);
      if (exponent > 0) {
        digits = "0".repeat(Math.max(0, exponent + 1 - digits.length)) + digits;
        digits = digits.slice(0, -exponent) + "." + digits.slice(-exponent);
      }
      return formatter.format(digits);
    }

    function typedMinor(why) {
      return readAmount(amountInput ? amountInput.value : "", decimal, exponent, signs, why);
    }
    // The server's own sentences (payments.views._amount_errors, inputs.parse_amount_input).
    function refusal(why, sum) {
      if (why.problem === "ambiguous") {
        return fill(messages.ambiguous || "", { text: why.text, small: money(why.small), large: money(why.large) });
      }
      if (why.problem === "negative") {
        return messages.negative || "";
      }
      if (why.problem === "currency") {
        return fill(messages.currency || "", { currency: form.dataset.currency });
      }
      if (why.problem === "large") {
        return fill(messages.most || "", { amount: money(sum) });
      }
      if (why.problem === "decimals") {
        return exponent ? fill(messages.decimals || "", { digits: exponent }) : messages.whole || "";
      }
      return messages.invalid || "";
    }

    function limits(typed, sum) {
      var minimum = parseInt(form.dataset.minimum, 10) || 0;
      if (typed <= 0) {
        return messages.positive || "";
      }
      if (typed > sum) {
        return fill(messages.most || "", { amount: money(sum) });
      }
      if (typed < minimum && typed !== sum) {
        return fill(messages.smallest || "", { amount: money(minimum) });
      }
      return "";
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
      var why = {};
      var typed = typedMinor(why);
      var problem = typed === null ? refusal(why, sum) : typed === undefined ? "" : limits(typed, sum);
      if (problem) {
        // Not an amount that can be paid: the server's reason, as "Continue" would say it.
        var said = document.createElement("p");
        said.className = "pay-preview__intro pay-preview__problem";
        said.textContent = problem;
        split.appendChild(said);
        return;
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
