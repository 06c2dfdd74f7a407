/*
 * The card page (portal/templates/payments/card.html), listed in the page's script
 * inventory (portal/payments/inventory.py). Card details are typed into Stripe.js's
 * card field and sent to Stripe only: this script sends our server nothing but the id
 * of the SetupIntent that Stripe.js confirmed. The server computes every amount.
 */
(function () {
  "use strict";

  function readMessages(element) {
    try {
      return JSON.parse(element.dataset.messages || "{}");
    } catch (error) {
      return {};
    }
  }

  function setUpCardForm(form) {
    var stripe = window.Stripe(form.dataset.publishableKey);
    var messages = readMessages(form);
    var card = stripe.elements({ locale: form.dataset.locale }).create("card");
    card.mount("#card-element");

    var errors = document.getElementById("card-errors");
    var button = document.getElementById("pay-button");
    var newCard = document.getElementById("new-card");
    var busy = false;

    function usesSavedCard() {
      var choice = form.querySelector("input[name=card_choice]:checked");
      return Boolean(choice) && choice.value === "saved";
    }

    function setBusy(value) {
      busy = value;
      button.disabled = value;
      if (value) {
        button.setAttribute("aria-busy", "true");
      } else {
        button.removeAttribute("aria-busy");
      }
    }

    form.querySelectorAll("input[name=card_choice]").forEach(function (input) {
      input.addEventListener("change", function () {
        newCard.hidden = usesSavedCard();
      });
    });

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (busy) {
        return; // a double click submits once
      }
      setBusy(true);
      errors.textContent = "";
      if (usesSavedCard()) {
        form.submit();
        return;
      }
      stripe
        .confirmCardSetup(form.dataset.setupSecret, { payment_method: { card: card } })
        .then(function (result) {
          if (result.error) {
            var code = result.error.decline_code || result.error.code;
            errors.textContent = messages[code] || messages.default || "";
            setBusy(false);
            return;
          }
          form.elements.setup_intent.value = result.setupIntent.id;
          form.submit(); // does not fire this handler again
        });
    });
  }

  function authenticate(section) {
    var stripe = window.Stripe(section.dataset.publishableKey);
    var form = document.getElementById("check-form");
    // Whatever the bank says, the server asks Stripe how the payment ended.
    stripe.confirmCardPayment(section.dataset.clientSecret).then(
      function () {
        form.submit();
      },
      function () {
        form.submit();
      }
    );
  }

  var form = document.getElementById("pay-form");
  if (form) {
    setUpCardForm(form);
  }
  var section = document.getElementById("authenticate");
  if (section) {
    authenticate(section);
  }
})();
