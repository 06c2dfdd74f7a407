"""Stripe, behind one small class. The only module that imports `stripe`.

Everything the rest of the portal sees is a plain frozen dataclass or one of the
`GatewayError` subclasses below; amounts cross this boundary as `Money` and are
converted to Stripe's units here and nowhere else.

The same class talks to real Stripe and, in development and tests, to localstripe
(`STRIPE_API_BASE` on loopback). localstripe ignores idempotency keys and rejects
parameters it does not know, so calls stay within what both accept:
https://github.com/adrienverge/localstripe (README, "Limitations").
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from portal.money import Money, minor_unit_exponent

if TYPE_CHECKING:
    import stripe

# `stripe` (some 30 MB of a worker's memory) is imported by the calls that use it, so a
# worker that only shows pages never loads it.

log = logging.getLogger(__name__)
# The stripe library's DEBUG log prints whole API responses, card expiry dates included
# (PaymentMethod objects): it never logs below INFO here, whatever the root level.
logging.getLogger("stripe").setLevel(max(logging.getLogger("stripe").level, logging.INFO))

STRIPE_API = "https://api.stripe.com"
STRIPE_JS = "https://js.stripe.com/v3/"
WEBHOOK_TOLERANCE_SECONDS = 300  # Stripe's default: a signed event older than 5 minutes is refused
SETUP_FAILED = "setup_intent.setup_failed"

# https://docs.stripe.com/currencies#zero-decimal and #three-decimal. Every other
# currency is sent with two decimals, including ISK, HUF and TWD ("special cases"),
# whatever ISO 4217 says; three-decimal amounts must end in 0.
# fmt: off
ZERO_DECIMAL = frozenset({
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA",
    "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF",
})
THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})
# fmt: on


# --- errors ---------------------------------------------------------------------------
class GatewayError(Exception):
    """Stripe refused or could not be reached. `code` is Stripe's, or ours for outages."""

    code = "gateway_error"

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        super().__init__(message or self.code)
        if code:
            self.code = code


class CardDeclined(GatewayError):
    """The card or the bank said no (definitive: the same request will fail again)."""

    code = "card_declined"

    def __init__(
        self, message: str = "", *, code: str | None = None, payment_intent_id: str | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.payment_intent_id = payment_intent_id


class GatewayUnavailable(GatewayError):
    """Stripe could not be reached, timed out or failed on its side: the outcome is unknown."""

    code = "gateway_unavailable"


class GatewayRejected(GatewayError):
    """Stripe refused the request itself (a bug or a configuration problem on our side)."""

    code = "gateway_rejected"


class AttemptInDoubt(GatewayError):
    """Stripe already holds a request with this idempotency key and other parameters: an
    earlier attempt whose answer we never got did reach Stripe (a different card)."""

    code = "attempt_in_doubt"


class BadSignature(GatewayError):
    code = "bad_signature"


class AmountNotRepresentable(GatewayError):
    """Stripe cannot charge this exact amount in this currency (e.g. 1.235 KWD)."""

    code = "amount_not_representable"


# --- amounts ----------------------------------------------------------------------------
def stripe_exponent(currency: str) -> int:
    code = currency.upper()
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def to_stripe_amount(amount: Money) -> int:
    """Our minor units (ISO 4217) as Stripe's integer amount for that currency."""
    shift = stripe_exponent(amount.currency) - minor_unit_exponent(amount.currency)
    if shift >= 0:
        value = amount.minor * 10**shift
    else:
        value, remainder = divmod(amount.minor, 10**-shift)
        if remainder:
            raise AmountNotRepresentable(f"{amount} has more decimals than Stripe accepts")
    if amount.currency in THREE_DECIMAL and value % 10:
        raise AmountNotRepresentable(f"Stripe needs {amount.currency} amounts ending in 0")
    return int(value)


def from_stripe_amount(value: int, currency: str) -> Money:
    """Stripe's integer amount back into our minor units; refuses fractions of a minor unit."""
    code = currency.upper()
    shift = stripe_exponent(code) - minor_unit_exponent(code)
    if shift >= 0:
        minor, remainder = divmod(value, 10**shift)
        if remainder:
            raise AmountNotRepresentable(f"{value} {code} is a fraction of a minor unit")
    else:
        minor = value * 10**-shift
    return Money(minor, code)


# --- results ----------------------------------------------------------------------------
@dataclass(frozen=True)
class CardSummary:
    payment_method_id: str
    customer_id: str | None
    brand: str
    last4: str
    exp_month: int | None = None
    exp_year: int | None = None


@dataclass(frozen=True)
class SetupResult:
    id: str
    status: str
    customer_id: str | None
    payment_method_id: str | None
    client_secret: str = field(repr=False, default="")


@dataclass(frozen=True)
class SetupFailure:
    """A `setup_intent.setup_failed` event: a card Stripe.js tried on one of our
    SetupIntents was declined (https://docs.stripe.com/api/events/types
    #event_types-setup_intent.setup_failed). Of Stripe's error only its code is kept."""

    id: str
    customer_id: str
    metadata: Mapping[str, str]
    error_code: str | None = None


@dataclass(frozen=True)
class IntentResult:
    """A PaymentIntent as far as we care: never any card data."""

    id: str
    status: str  # succeeded, requires_action, processing, requires_payment_method, canceled…
    amount: Money
    customer_id: str | None
    payment_method_id: str | None
    metadata: Mapping[str, str]
    error_code: str | None = None
    error_message: str | None = None
    client_secret: str = field(repr=False, default="")

    @property
    def is_succeeded(self) -> bool:
        return self.status == "succeeded"

    @property
    def needs_action(self) -> bool:
        return self.status == "requires_action"

    @property
    def is_failed(self) -> bool:
        return self.status in ("requires_payment_method", "canceled")


@dataclass(frozen=True)
class RefundResult:
    id: str
    status: str
    amount: Money


@dataclass(frozen=True)
class ChargeRefunds:
    """What a `charge.refunded` event says: all refunded on the charge so far, and the
    refunds it lists (Stripe lists them only for API versions before 2022-11-15)."""

    charge_id: str
    payment_intent_id: str | None
    refunded: Money
    refunds: tuple[RefundResult, ...] = ()


@dataclass(frozen=True)
class GatewayEvent:
    """A verified webhook event: its id, type, and the object it carries."""

    id: str
    type: str
    created: int
    data: Mapping[str, Any]

    def intent(self) -> IntentResult | None:
        if self.data.get("object") != "payment_intent":
            return None
        return _intent(self.data)

    def setup_failure(self) -> SetupFailure | None:
        """The SetupIntent of a `setup_intent.setup_failed` event; None for any other event,
        or for a SetupIntent with no id or no Stripe customer (never one of ours: the
        portal creates each for a customer)."""
        if self.type != SETUP_FAILED or self.data.get("object") != "setup_intent":
            return None
        setup_id, customer_id = self.data.get("id"), _id_of(self.data.get("customer"))
        if not isinstance(setup_id, str) or not setup_id or not customer_id:
            return None
        error = _get(self.data, "last_setup_error")
        metadata = _get(self.data, "metadata")
        return SetupFailure(
            id=setup_id,
            customer_id=customer_id,
            metadata={
                str(k): str(v)
                for k, v in (dict(metadata) if isinstance(metadata, Mapping) else {}).items()
            },
            error_code=_get(error, "decline_code") or _get(error, "code"),
        )

    def charge_refunds(self) -> ChargeRefunds | None:
        if self.data.get("object") != "charge":
            return None
        data = self.data
        currency = str(data.get("currency")).upper()
        return ChargeRefunds(
            charge_id=str(data.get("id")),
            payment_intent_id=_id_of(data.get("payment_intent")),
            refunded=from_stripe_amount(int(data.get("amount_refunded") or 0), currency),
            refunds=tuple(
                RefundResult(
                    id=str(_get(r, "id")),
                    status=str(_get(r, "status")),
                    amount=from_stripe_amount(int(_get(r, "amount") or 0), currency),
                )
                for r in _listed_refunds(data)
            ),
        )

    def kept(self) -> dict[str, Any]:
        """What the portal stores of the event's object to apply it later.

        Only the fields `intent`, `setup_failure` and `charge_refunds` read, and of the
        last error only its codes: Stripe's error carries the card's PaymentMethod (expiry
        date included), and a charge its card details, never stored here.
        """
        data = self.data
        if data.get("object") == "setup_intent":
            error = _get(data, "last_setup_error")
            return {
                "object": "setup_intent",
                **{key: data.get(key) for key in ("id", "status")},
                "customer": _id_of(data.get("customer")),
                "metadata": dict(_get(data, "metadata") or {}),
                "last_setup_error": (
                    {key: _get(error, key) for key in ("code", "decline_code")} if error else None
                ),
            }
        if data.get("object") == "charge":
            return {
                "object": "charge",
                **{key: data.get(key) for key in ("id", "currency", "amount_refunded")},
                "payment_intent": _id_of(data.get("payment_intent")),
                "refunds": {
                    "data": [
                        {key: _get(r, key) for key in ("id", "status", "amount")}
                        for r in _listed_refunds(data)
                    ]
                },
            }
        if data.get("object") != "payment_intent":
            return {"object": data.get("object")}
        error = _get(data, "last_payment_error")
        return {
            "object": "payment_intent",
            **{key: data.get(key) for key in ("id", "status", "amount", "currency")},
            "customer": _id_of(data.get("customer")),
            "payment_method": _id_of(data.get("payment_method")),
            "metadata": dict(data.get("metadata") or {}),
            "last_payment_error": (
                {key: _get(error, key) for key in ("code", "decline_code")} if error else None
            ),
        }


def _listed_refunds(charge: Mapping[str, Any]) -> list[Any]:
    """The refunds a charge lists (only API versions before 2022-11-15 list them)."""
    return list(_get(charge.get("refunds"), "data") or [])


def _plain(obj: Any) -> Any:
    """Stripe's objects as plain dicts (the library's own are not mappings)."""
    return obj.to_dict() if hasattr(obj, "to_dict") else obj


def _get(obj: Any, key: str) -> Any:
    obj = _plain(obj)
    if isinstance(obj, Mapping):
        return obj.get(key)
    return None


def _id_of(value: Any) -> str | None:
    """An expandable field: a plain id, or the expanded object's id."""
    if value is None or isinstance(value, str):
        return value
    found = _get(value, "id")
    return str(found) if found is not None else None


def _intent(pi: Any) -> IntentResult:
    pi = _plain(pi)
    error = _get(pi, "last_payment_error")
    currency = str(_get(pi, "currency")).upper()
    metadata = _get(pi, "metadata") or {}
    return IntentResult(
        id=_get(pi, "id"),
        status=_get(pi, "status"),
        amount=from_stripe_amount(int(_get(pi, "amount")), currency),
        customer_id=_id_of(_get(pi, "customer")),
        payment_method_id=_id_of(_get(pi, "payment_method")),
        metadata={str(k): str(v) for k, v in dict(metadata).items()},
        error_code=_get(error, "decline_code") or _get(error, "code"),
        error_message=_get(error, "message"),
        client_secret=_get(pi, "client_secret") or "",
    )


# --- the gateway ------------------------------------------------------------------------
@dataclass(frozen=True)
class StripeSettings:
    secret_key: str
    publishable_key: str
    webhook_secret: str
    api_base: str = STRIPE_API
    js_url: str = STRIPE_JS
    timeout_seconds: int = 20

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> StripeSettings:
        return cls(
            secret_key=config["STRIPE_SECRET_KEY"],
            publishable_key=config["STRIPE_PUBLISHABLE_KEY"],
            webhook_secret=config["STRIPE_WEBHOOK_SECRET"],
            api_base=config["STRIPE_API_BASE"],
            js_url=config["STRIPE_JS_URL"],
            timeout_seconds=int(config.get("STRIPE_TIMEOUT_SECONDS", 20)),
        )


class StripeGateway:
    """Every call the portal makes to Stripe; errors come out as `GatewayError`s."""

    def __init__(self, settings: StripeSettings) -> None:
        import stripe

        self.settings = settings
        self.client = stripe.StripeClient(
            settings.secret_key,
            base_addresses={"api": settings.api_base},
            # Retries are ours to decide (idempotency keys make them safe on real Stripe).
            max_network_retries=0,
            http_client=stripe.RequestsClient(timeout=settings.timeout_seconds),
        )

    # customers and cards
    def create_customer(self, *, name: str, email: str, portal_id: int) -> str:
        customer = self._call(
            self.client.v1.customers.create,
            {"name": name, "email": email, "metadata": {"portal_customer": str(portal_id)}},
            idempotency_key=f"portal-customer-{portal_id}",
        )
        return str(customer.id)

    def create_setup_intent(self, *, customer_id: str, key: str, portal_id: int) -> SetupResult:
        """A SetupIntent for a card of Stripe customer `customer_id`, naming our customer
        in its metadata as the portal's PaymentIntents do (its `setup_intent.setup_failed`
        events are counted against that customer: `payments.card_testing`)."""
        setup = self._call(
            self.client.v1.setup_intents.create,
            {
                "customer": customer_id,
                "payment_method_types": ["card"],
                "metadata": {"portal_customer": str(portal_id)},
            },
            idempotency_key=key,
        )
        return _setup(setup)

    def cancel_setup_intent(self, setup_intent_id: str) -> SetupResult:
        """Cancel a SetupIntent: its client secret can confirm no card any more. Stripe
        cancels one in requires_payment_method, requires_confirmation or requires_action
        and refuses the others (https://docs.stripe.com/api/setup_intents/cancel)."""
        return _setup(self._call(self.client.v1.setup_intents.cancel, setup_intent_id))

    def retrieve_setup_intent(self, setup_intent_id: str) -> SetupResult:
        return _setup(self._call(self.client.v1.setup_intents.retrieve, setup_intent_id))

    def retrieve_card(self, payment_method_id: str) -> CardSummary:
        return _card(self._call(self.client.v1.payment_methods.retrieve, payment_method_id))

    def attach_card(self, payment_method_id: str, *, customer_id: str) -> CardSummary:
        method = self._call(
            self.client.v1.payment_methods.attach, payment_method_id, {"customer": customer_id}
        )
        return _card(method)

    def detach_card(self, payment_method_id: str) -> None:
        self._call(self.client.v1.payment_methods.detach, payment_method_id)

    # payments
    def create_payment(
        self,
        *,
        amount: Money,
        customer_id: str,
        payment_method_id: str,
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> IntentResult:
        """Create and confirm a card PaymentIntent; a decline raises `CardDeclined`."""
        params = {
            "amount": to_stripe_amount(amount),
            "currency": amount.currency.lower(),
            "customer": customer_id,
            "payment_method": payment_method_id,
            "payment_method_types": ["card"],
            "confirm": True,
            "metadata": dict(metadata),
            "expand": ["latest_charge"],
        }
        return _intent(
            self._call(
                self.client.v1.payment_intents.create, params, idempotency_key=idempotency_key
            )
        )

    def charge_off_session(
        self,
        *,
        amount: Money,
        customer_id: str,
        payment_method_id: str,
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> IntentResult:
        """Charge a saved card while the customer is away (autopay): create and confirm a
        PaymentIntent with `off_session`.

        A decline raises `CardDeclined`. When the bank wants the customer to authenticate,
        Stripe declines with code `authentication_required` (CardDeclined); localstripe
        instead answers a PaymentIntent in `requires_action` (`IntentResult.needs_action`):
        callers treat both alike. https://docs.stripe.com/payments/save-and-reuse
        ("Charge the saved payment method later").
        """
        params = {
            "amount": to_stripe_amount(amount),
            "currency": amount.currency.lower(),
            "customer": customer_id,
            "payment_method": payment_method_id,
            "payment_method_types": ["card"],
            "confirm": True,
            "off_session": True,
            "metadata": dict(metadata),
        }
        return _intent(
            self._call(
                self.client.v1.payment_intents.create, params, idempotency_key=idempotency_key
            )
        )

    def find_payment(self, *, customer_id: str, metadata: Mapping[str, str]) -> IntentResult | None:
        """The newest PaymentIntent of Stripe customer `customer_id` whose metadata holds
        every item of `metadata`, or None: how a charge whose answer was lost is found
        before it is sent again (autopay's stale attempts). Lists the customer's 100
        newest PaymentIntents, strongly consistent, unlike the Search API
        (https://docs.stripe.com/api/payment_intents/list). Real Stripe also replays the
        first answer to a request sent again with the same idempotency key within 24
        hours; this check does not depend on that (nor on how long ago it was sent)."""
        page = self._call(
            self.client.v1.payment_intents.list, {"customer": customer_id, "limit": 100}
        )
        for pi in _get(_plain(page), "data") or []:
            found = _intent(pi)
            if found.customer_id == customer_id and all(
                found.metadata.get(key) == value for key, value in metadata.items()
            ):
                return found
        return None

    def retrieve_payment(self, payment_intent_id: str) -> IntentResult:
        return _intent(self._call(self.client.v1.payment_intents.retrieve, payment_intent_id))

    def cancel_payment(self, payment_intent_id: str) -> IntentResult:
        return _intent(self._call(self.client.v1.payment_intents.cancel, payment_intent_id))

    def refund(
        self, *, payment_intent_id: str, amount: Money, idempotency_key: str
    ) -> RefundResult:
        refund = self._call(
            self.client.v1.refunds.create,
            {"payment_intent": payment_intent_id, "amount": to_stripe_amount(amount)},
            idempotency_key=idempotency_key,
        )
        return RefundResult(
            id=str(refund.id),
            status=str(refund.status),
            amount=from_stripe_amount(int(refund.amount), amount.currency),
        )

    # webhooks
    def verify_event(self, payload: bytes, signature: str | None) -> GatewayEvent:
        """Check the signature on the raw body (and its age), then parse it."""
        import stripe

        try:
            stripe.WebhookSignature.verify_header(
                payload,
                signature,
                self.settings.webhook_secret,
                tolerance=WEBHOOK_TOLERANCE_SECONDS,
            )
            body = json.loads(payload)
            data = body["data"]["object"]
            return GatewayEvent(
                id=str(body["id"]), type=str(body["type"]), created=int(body["created"]), data=data
            )
        except (stripe.SignatureVerificationError, ValueError, KeyError, TypeError) as error:
            raise BadSignature(str(error)) from None

    # plumbing
    def _call(self, method: Any, *args: Any, idempotency_key: str | None = None) -> Any:
        import stripe

        options = {"idempotency_key": idempotency_key} if idempotency_key else None
        try:
            if options is not None:
                return method(*args, options=options)
            return method(*args)
        except stripe.CardError as error:
            raise CardDeclined(
                error.user_message or "",
                code=_decline_code(error),
                payment_intent_id=_id_of(_get(error.error, "payment_intent")),
            ) from None
        except (stripe.APIConnectionError, stripe.APIError, stripe.RateLimitError) as error:
            log.warning("Stripe unavailable: %s", type(error).__name__)
            raise GatewayUnavailable(type(error).__name__) from None
        except stripe.IdempotencyError:
            log.warning("Stripe holds an earlier request with key %s", idempotency_key)
            raise AttemptInDoubt() from None
        except stripe.StripeError as error:
            if (error.http_status or 0) >= 500:
                raise GatewayUnavailable(type(error).__name__) from None
            log.error("Stripe refused a request: %s %s", type(error).__name__, error.user_message)
            raise GatewayRejected(error.user_message or type(error).__name__) from None


def _decline_code(error: stripe.CardError) -> str:
    details = error.error
    return str(_get(details, "decline_code") or error.code or "card_declined")


def _setup(setup: Any) -> SetupResult:
    setup = _plain(setup)
    return SetupResult(
        id=str(setup["id"]),
        status=str(setup["status"]),
        customer_id=_id_of(_get(setup, "customer")),
        payment_method_id=_id_of(_get(setup, "payment_method")),
        client_secret=_get(setup, "client_secret") or "",
    )


def _card(method: Any) -> CardSummary:
    method = _plain(method)
    card = _get(method, "card")
    return CardSummary(
        payment_method_id=str(method["id"]),
        customer_id=_id_of(_get(method, "customer")),
        brand=str(_get(card, "brand") or "card"),
        last4=str(_get(card, "last4") or ""),
        exp_month=_int_or_none(_get(card, "exp_month")),
        exp_year=_int_or_none(_get(card, "exp_year")),
    )


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


# --- configuration --------------------------------------------------------------------
def is_enabled(config: Mapping[str, Any]) -> bool:
    return bool(config.get("STRIPE_SECRET_KEY"))


@cache
def _gateway_for(settings: StripeSettings) -> StripeGateway:
    return StripeGateway(settings)


def gateway_from_config(config: Mapping[str, Any]) -> StripeGateway:
    """One gateway (and HTTP connection pool) per distinct set of settings."""
    return _gateway_for(StripeSettings.from_config(config))


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def settings_problems(config: Mapping[str, Any]) -> list[str]:
    """What is wrong with the STRIPE_* settings; empty when card payments are off or sound."""
    secret = config.get("STRIPE_SECRET_KEY") or ""
    if not secret:
        return []
    problems = []
    publishable = config.get("STRIPE_PUBLISHABLE_KEY") or ""
    if not config.get("STRIPE_WEBHOOK_SECRET"):
        problems.append("STRIPE_WEBHOOK_SECRET is required with STRIPE_SECRET_KEY.")
    if not publishable.startswith("pk_"):
        problems.append("STRIPE_PUBLISHABLE_KEY must be set (pk_…) with STRIPE_SECRET_KEY.")
    live = secret.startswith(("sk_live_", "rk_live_"))
    if live != publishable.startswith("pk_live_"):
        problems.append("STRIPE_SECRET_KEY and STRIPE_PUBLISHABLE_KEY must both be live or test.")
    if live and origin_of(config.get("STRIPE_API_BASE", "")) != STRIPE_API:
        problems.append(f"A live Stripe key must talk to {STRIPE_API}, not a fake API base.")
    if live and config.get("STRIPE_JS_URL") != STRIPE_JS:
        problems.append(f"A live Stripe key must load Stripe.js from {STRIPE_JS}.")
    for name in ("STRIPE_API_BASE", "STRIPE_JS_URL"):
        if not str(config.get(name, "")).startswith(
            ("https://", "http://127.0.0.1", "http://localhost")
        ):
            problems.append(f"{name} must be https (or a loopback address for localstripe).")
    return problems
