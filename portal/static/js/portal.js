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

  var EDGES = /^[\s\ufeff\u200b\u200c\u200d\u200e\u200f\u2060]+|[\s\ufeff\u200b\u200c\u200d\u200e\u200f\u2060]+$/g;
  // Every ISO 4217 code Babel knows (babel.numbers.list_currencies(), as inputs._KNOWN_CODES;
  // a test compares the two): "12 EUR" on a dollar amount names another currency.
  var CURRENCY_CODES = (
    "ADP AED AFA AFN ALK ALL AMD ANG AOA AOK AON AOR ARA ARL ARM ARP ARS ATS AUD AWG AZM " +
    "AZN BAD BAM BAN BBD BDT BEC BEF BEL BGL BGM BGN BGO BHD BIF BMD BND BOB BOL BOP BOV " +
    "BRB BRC BRE BRL BRN BRR BRZ BSD BTN BUK BWP BYB BYN BYR BZD CAD CDF CHE CHF CHW CLE " +
    "CLF CLP CNH CNY COP COU CRC CSD CSK CUC CUP CVE CYP CZK DDM DEM DJF DKK DOP DZD ECS " +
    "ECV EEK EGP ERN ESA ESB ESP ETB EUR FIM FJD FKP FRF GBP GEK GEL GHC GHS GIP GMD GNF " +
    "GNS GQE GRD GTQ GWE GWP GYD HKD HNL HRD HRK HTG HUF IDR IEP ILP ILR ILS INR IQD IRR " +
    "ISJ ISK ITL JMD JOD JPY KES KGS KHR KMF KPW KRH KRO KRW KWD KYD KZT LAK LBP LKR LRD " +
    "LSL LTL LTT LUC LUF LUL LVL LVR LYD MAD MAF MCF MDC MDL MGA MGF MKD MKN MLF MMK MNT " +
    "MOP MRO MRU MTL MTP MUR MVP MVR MWK MXN MXP MXV MYR MZE MZM MZN NAD NGN NIC NIO NLG " +
    "NOK NPR NZD OMR PAB PEI PEN PES PGK PHP PKR PLN PLZ PTE PYG QAR RHD ROL RON RSD RUB " +
    "RUR RWF SAR SBD SCR SDD SDG SDP SEK SGD SHP SIT SKK SLE SLL SOS SRD SRG SSP STD STN " +
    "SUR SVC SYP SZL THB TJR TJS TMM TMT TND TOP TPE TRL TRY TTD TWD TZS UAH UAK UGS UGX " +
    "USD USN USS UYI UYP UYU UYW UZS VEB VED VEF VES VND VNN VUV WST XAD XAF XAG XAU XBA " +
    "XBB XBC XBD XCD XCG XDR XEU XFO XFU XOF XPD XPF XPT XRE XSU XTS XUA XXX YDD YER YUD " +
    "YUM YUN YUR ZAL ZAR ZMK ZMW ZRN ZRZ ZWD ZWG ZWL ZWR"
  ).split(" ");
  var LETTER_TRIPLES = /(^|[^A-Za-z])([A-Za-z]{3})(?=[^A-Za-z]|$)/g;
  var TEN_TO_THE_15 = "1000000000000000";

  function namesCurrency(text) {
    if (/\p{Sc}/u.test(text)) {
      return true;
    }
    var found = false;
    text.replace(LETTER_TRIPLES, function (whole, before, code) {
      found = found || CURRENCY_CODES.indexOf(code.toUpperCase()) >= 0;
      return whole;
    });
    return found;
  }

  // The amount typed, in minor units, read by the rule of the server's reader, step by
  // step in its order (portal/inputs.py, parse_amount_input: change both together):
  // undefined when empty, null when the server would refuse it or the script is not sure
  // how it reads it (no preview then, but a reason). `decimal` is the language's decimal
  // mark, `signs` the currency's signs that a pasted total may carry. On null,
  // `why.problem` (when `why` is given) names the server's reason: "ambiguous" (with
  // `text`, `small` and `large`, the two readings in minor units), "currency", "number"
  // (letters, marks out of place), "invalid" (too long; a huge negative), "large",
  // "decimals" or "negative".
  function readAmount(typed, decimal, exponent, signs, why) {
    why = why || {};
    why.problem = "number";
    var text = typed.replace(EDGES, "");
    if (text === "") {
      return undefined;
    }
    if (text.length > 64) {
      why.problem = "invalid";
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
    if (namesCurrency(text)) {
      why.problem = "currency"; // "€12" or "12 EUR" for an amount in dollars
      return null;
    }
    if (!negative && /^[-\u2212]/.test(text)) {
      negative = true; // "$-5"
      text = text.slice(1).trim();
    }
    if (!/^[0-9., \u00a0\u202f]+$/.test(text)) {
      return null; // letters, "1e3", other digits
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
    var whole = integer.replace(/[^0-9]/g, "").replace(/^0+/, "");
    var beyond = whole.length > 16 || (whole.length === 16 && (whole !== TEN_TO_THE_15 || /[1-9]/.test(fraction)));
    if (beyond) {
      why.problem = negative ? "invalid" : "large"; // past 10^15, as the server says it
      return null;
    }
    if (/[1-9]/.test(fraction.slice(exponent))) {
      why.problem = "decimals"; // more decimals than the currency has
      return null;
    }
    if (negative && /[1-9]/.test(whole + fraction)) {
      why.problem = "negative"; // "-0" is zero, as the server reads it
      return null;
    }
    if (whole.length > 15) {
      why.problem = "large"; // 10^15 itself: more than any amount owed (and a safe integer)
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
      if (why.problem === "invalid") {
        return messages.invalid || "";
      }
      return messages.number || "";
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
      if (problem && !edited) {
        return; // refused by the server already: its reason is under the field
      }
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
    // After a refused "Continue" the field shows the server's reason; the preview says
    // it again only once the amount is changed.
    var edited = !(amountInput && amountInput.getAttribute("aria-invalid") === "true");
    if (amountInput) {
      amountInput.addEventListener("input", function () {
        edited = true;
        render();
      });
    }
    render();
  }

  focusErrorSummary();
  var choose = document.getElementById("pay-choose");
  if (choose) {
    setUpPreview(choose);
  }
})();
