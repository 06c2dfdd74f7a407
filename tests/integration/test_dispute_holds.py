"""What an open dispute holds is not payable, not reminded, and not changed by an import;
its emails' links open the dispute; its steps show in the customer's timeline."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import select

from portal.access.services import issue_link
from portal.audit.actors import Actor
from portal.db import utcnow
from portal.desk.timeline import timeline_for
from portal.disputes.services import accept_in_part, open_dispute, reject, withdraw
from portal.errors import DomainError
from portal.extensions import db
from portal.imports.services import ImportFailed, import_file
from portal.invoices.models import Invoice
from portal.money import Money
from portal.notifications.models import OutboxMessage
from portal.notifications.services import schedule_collection_emails
from portal.payments.errors import InvalidPaymentAmount, NothingToPay
from portal.payments.models import Checkout
from portal.payments.services import start_checkout
from tests.factories import csrf_token_from, make_customer, make_invoice

pytest_plugins = ["tests.stripe_server"]

DUE = date(2026, 10, 31)
STAFF = Actor("staff", "3")


def at(day: date) -> datetime:
    """11:00 in New York (15:00 UTC) on `day`: inside the email window."""
    return datetime(day.year, day.month, day.day, 15, 0, tzinfo=UTC)


@pytest.fixture
def request_ctx(app, db_session):
    with app.test_request_context():
        yield


def _invoice(customer=None, lines=None, number=None):
    customer = customer or make_customer(timezone="America/New_York")
    invoice = make_invoice(
        customer,
        number=number,
        issue_date=date(2026, 10, 1),
        due_date=DUE,
        lines=lines or [("Widgets", "1", "100.00"), ("Gadgets", "2", "25.00")],
    )
    invoice.created_at = at(date(2026, 10, 1))  # long imported: no "new invoice" notice
    db.session.flush()
    return invoice


def _dispute(invoice, lines, now):
    return open_dispute(
        invoice.customer,
        invoice,
        lines,
        "damaged",
        "",
        (),
        actor=Actor.customer(invoice.customer),
        now=now,
    )


def _reminders(invoice):
    return list(
        db.session.scalars(
            select(OutboxMessage)
            .where(
                OutboxMessage.invoice_id == invoice.id,
                OutboxMessage.kind.like("reminder%"),
            )
            .order_by(OutboxMessage.id)
        )
    )


# --- reminders --------------------------------------------------------------------------
def test_reminders_leave_out_the_held_amount_and_say_it_is_on_hold(request_ctx):
    # given an overdue invoice of 150.00 whose line 2 (50.00) is disputed
    invoice = _invoice()
    _dispute(invoice, {2: None}, at(DUE))
    # when the +1 reminder is due
    schedule_collection_emails(now=at(DUE + timedelta(days=1)))
    # then it asks for 100.00 and says 50.00 is on hold
    [reminder] = _reminders(invoice)
    assert reminder.dedupe_key == f"reminder:{invoice.id}:1"
    assert "and $100.00 is still open" in reminder.body_text
    assert "A further $50.00 is on hold" in reminder.body_text
    assert "A further $50.00 is on hold" in reminder.body_html
    assert "$150.00" not in reminder.body_text


def test_a_wholly_disputed_invoice_is_not_reminded(request_ctx):
    invoice = _invoice()
    _dispute(invoice, {1: None, 2: None}, at(DUE - timedelta(days=5)))
    for day in range(-3, 31):
        schedule_collection_emails(now=at(DUE + timedelta(days=day)))
    assert _reminders(invoice) == []


def test_after_a_rejection_reminders_resume_from_that_day_never_retroactively(request_ctx):
    # given an invoice wholly disputed five days before it is due
    invoice = _invoice()
    dispute = _dispute(invoice, {1: None, 2: None}, at(DUE - timedelta(days=5)))
    # and the runner passing every day, the dispute rejected ten days after the due date
    sent_on = []
    for day in range(-4, 31):
        today = DUE + timedelta(days=day)
        if day == 10:
            reject(dispute, "Signed for on delivery.", actor=STAFF, now=at(today))
        before = len(_reminders(invoice))
        schedule_collection_emails(now=at(today))
        sent_on += [(day, r.dedupe_key.rsplit(":", 1)[1]) for r in _reminders(invoice)[before:]]
    # then the steps that fell while held (-3, +1, +7) are never sent late: the next
    # reminder is the +14 step, on its day, then +30
    assert sent_on == [(14, "14"), (30, "30")]


def test_a_step_due_on_the_day_of_the_decision_is_sent(request_ctx):
    invoice = _invoice()
    dispute = _dispute(invoice, {1: None, 2: None}, at(DUE))
    withdraw(dispute, actor=Actor.customer(invoice.customer), now=at(DUE + timedelta(days=7)))
    schedule_collection_emails(now=at(DUE + timedelta(days=7)))
    assert [r.dedupe_key for r in _reminders(invoice)] == [f"reminder:{invoice.id}:7"]


def test_a_partial_hold_keeps_the_rest_reminded_and_a_decision_does_not_repeat_a_step(
    request_ctx,
):
    invoice = _invoice()
    dispute = _dispute(invoice, {2: None}, at(DUE))
    schedule_collection_emails(now=at(DUE + timedelta(days=1)))
    accept_in_part(
        dispute, {2: Money(1000, "USD")}, "Half", actor=STAFF, now=at(DUE + timedelta(days=3))
    )
    schedule_collection_emails(now=at(DUE + timedelta(days=3)))
    schedule_collection_emails(now=at(DUE + timedelta(days=7)))
    reminders = _reminders(invoice)
    assert [r.dedupe_key.rsplit(":", 1)[1] for r in reminders] == ["1", "7"]
    assert "and $140.00 is still open" in reminders[1].body_text  # 150 - 10 credited
    assert "on hold" not in reminders[1].body_text


# --- the pay flow -----------------------------------------------------------------------
@pytest.mark.usefixtures("stripe_app", "request_context")
def test_the_pay_flow_cannot_take_a_held_amount_even_as_a_partial_payment():
    # given 150.00, of which line 2 (50.00) is disputed
    invoice = _invoice(make_customer(timezone="America/New_York"), number="INV-HELD")
    _dispute(invoice, {2: None}, utcnow())
    # when the customer tries to pay 100.01 of it (less than the balance, more than payable)
    with pytest.raises(InvalidPaymentAmount) as refused:
        start_checkout(invoice.customer, ["INV-HELD"], "100.01", now=utcnow())
    # then it is refused with what may be paid, and no checkout exists
    assert "$100.00" in refused.value.message
    assert db.session.scalar(select(Checkout.id)) is None
    # and paying everything payable charges exactly 100.00
    checkout = start_checkout(invoice.customer, ["INV-HELD"], None, now=utcnow())
    assert checkout.amount == Money(10000, "USD")


@pytest.mark.usefixtures("stripe_app", "request_context")
def test_a_wholly_held_invoice_cannot_be_chosen_for_payment():
    invoice = _invoice(make_customer(timezone="America/New_York"), number="INV-ALLHELD")
    _dispute(invoice, {1: None, 2: None}, utcnow())
    with pytest.raises(NothingToPay):
        start_checkout(invoice.customer, ["INV-ALLHELD"], "1.00", now=utcnow())


# --- the import -------------------------------------------------------------------------
HEADER = (
    "account_number,invoice_number,issue_date,due_date,currency,line_number,"
    "description,quantity,unit_price,tax_amount\n"
)


def _import(text):
    return import_file(
        "invoices", io.StringIO(HEADER + text), now=utcnow(), actor=Actor.importer("test")
    )


def test_the_import_refuses_to_change_or_remove_a_line_under_an_open_dispute(request_ctx):
    make_customer(account_number="D-1", timezone="America/New_York")
    _import(
        "D-1,INV-D,2026-10-01,2026-10-31,USD,1,Widgets,1,100.00,\n"
        "D-1,INV-D,2026-10-01,2026-10-31,USD,2,Gadgets,2,25.00,\n"
        "D-1,INV-D,2026-10-01,2026-10-31,USD,3,Fee,1,5.00,\n"
    )
    invoice = db.session.scalars(select(Invoice).where(Invoice.number == "INV-D")).one()
    dispute = _dispute(invoice, {2: None, 3: None}, utcnow())
    # when a re-import changes line 2's price and drops line 3
    with pytest.raises(ImportFailed) as failure:
        _import(
            "D-1,INV-D,2026-10-01,2026-10-31,USD,1,Widgets,1,100.00,\n"
            "D-1,INV-D,2026-10-01,2026-10-31,USD,2,Gadgets,2,20.00,\n"
        )
    # then each line is named with the dispute, on its CSV line, and nothing changed
    assert [(e.line, e.message) for e in failure.value.errors] == [
        (
            2,
            f"invoice 'INV-D' line 3 is disputed (dispute {dispute.id} is open): the import "
            "cannot remove it until the dispute is decided",
        ),
        (
            3,
            f"invoice 'INV-D' line 2 is disputed (dispute {dispute.id} is open): the import "
            "cannot change it until the dispute is decided",
        ),
    ]
    db.session.expire_all()
    assert [line.amount_minor for line in invoice.lines] == [10000, 5000, 500]
    # and an unchanged disputed line does not stop other changes to the invoice
    report = _import(
        "D-1,INV-D,2026-10-01,2026-11-30,USD,1,Widgets,1,90.00,\n"
        "D-1,INV-D,2026-10-01,2026-11-30,USD,2,Gadgets,2,25.00,\n"
        "D-1,INV-D,2026-10-01,2026-11-30,USD,3,Fee,1,5.00,\n"
    )
    assert report.updated == 1
    # once decided, line 2 can change, but line 3 (which a dispute names) cannot go
    reject(dispute, "no", actor=STAFF, now=utcnow())
    with pytest.raises(ImportFailed) as failure:
        _import(
            "D-1,INV-D,2026-10-01,2026-11-30,USD,1,Widgets,1,90.00,\n"
            "D-1,INV-D,2026-10-01,2026-11-30,USD,2,Gadgets,2,20.00,\n"
        )
    assert [(e.line, e.message) for e in failure.value.errors] == [
        (2, f"invoice 'INV-D' line 3 cannot be removed: dispute {dispute.id} names it")
    ]


# --- links ------------------------------------------------------------------------------
def test_a_link_with_a_target_opens_that_page(client, db_session):
    customer = make_customer()
    issued = issue_link(
        customer,
        now=utcnow(),
        ttl=timedelta(days=1),
        actor=Actor.system(),
        target="/disputes/42",
    )
    db.session.flush()
    path = f"/l/{issued.token}"
    landing = client.get(path)
    entered = client.post(path, data={"csrf_token": csrf_token_from(landing.text)})
    assert entered.headers["Location"] == "/disputes/42"


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example", "/\\evil", "x"])
def test_a_link_target_must_be_a_path_on_this_site(db_session, target):
    with pytest.raises(DomainError):
        issue_link(
            make_customer(),
            now=utcnow(),
            ttl=timedelta(days=1),
            actor=Actor.system(),
            target=target,
        )


def test_a_stored_target_that_is_not_local_is_ignored_when_opened(client, db_session):
    customer = make_customer()
    issued = issue_link(customer, now=utcnow(), ttl=timedelta(days=1), actor=Actor.system())
    issued.link.target = "//evil.example/x"  # written behind the service's back
    db.session.flush()
    path = f"/l/{issued.token}"
    landing = client.get(path)
    entered = client.post(path, data={"csrf_token": csrf_token_from(landing.text)})
    assert entered.headers["Location"] == "/account"


# --- the staff timeline -----------------------------------------------------------------
def test_every_step_shows_in_the_customers_timeline(request_ctx):
    invoice = _invoice()
    dispute = _dispute(invoice, {2: None}, at(DUE))
    reject(dispute, "Signed for.", actor=STAFF, now=at(DUE + timedelta(days=2)))
    entries = [e for e in timeline_for(invoice.customer_id).entries if e.kind.startswith("dispute")]
    assert [(e.kind, e.reference, e.amount, e.detail, e.status) for e in entries] == [
        ("dispute.rejected", invoice.number, Money(5000, "USD"), "Signed for.", "staff:3"),
        (
            "dispute.opened",
            invoice.number,
            Money(5000, "USD"),
            None,
            f"customer:{invoice.customer_id}",
        ),
    ]
    assert entries[0].label == "Dispute rejected"


def test_a_delivered_dispute_email_opens_the_dispute(app, client, db_session, smtp_server):
    import re

    from portal.notifications.sender import SmtpSender, SmtpSettings
    from portal.notifications.services import deliver_due_messages

    # given a Spanish-speaking customer who opened a dispute
    customer = make_customer(locale="es", timezone="Europe/Madrid")
    with app.test_request_context():
        dispute = _dispute(_invoice(customer), {2: None}, at(DUE))
    # when the runner delivers its email over SMTP
    sender = SmtpSender(SmtpSettings.from_url(smtp_server.url))
    try:
        report = deliver_due_messages(sender, now=at(DUE), runner="test")
    finally:
        sender.close()
    # then it arrived once, in Spanish, and its link opens the dispute's page
    assert report.sent == 1
    (received,) = smtp_server.received
    assert received["Subject"].startswith("Hemos recibido su disputa de la factura")
    text = received.get_body(("plain",)).get_content()
    url = re.search(r"https?://\S+/l/\S+", text).group(0)
    path = "/l/" + url.rsplit("/l/", 1)[1]
    # (opened the day it was sent: the link lives ACCESS_LINK_TTL_DAYS from then, not from today)
    with time_machine.travel(at(DUE) + timedelta(hours=1), tick=False):
        landing = client.get(path)
        entered = client.post(path, data={"csrf_token": csrf_token_from(landing.text)})
    assert entered.headers["Location"] == f"/disputes/{dispute.id}"


def test_an_imported_credit_note_can_name_the_line_it_credits(request_ctx):
    from portal.invoices.balances import line_balances

    make_customer(account_number="C-1", timezone="America/New_York")
    _import(
        "C-1,INV-C,2026-10-01,2026-10-31,USD,1,Widgets,1,100.00,\n"
        "C-1,INV-C,2026-10-01,2026-10-31,USD,2,Fee,1,20.00,\n"
    )
    header = (
        "account_number,credit_note_reference,invoice_number,issued_on,amount,currency,"
        "line_number\n"
    )

    def credits(text):
        return import_file(
            "credit-notes", io.StringIO(header + text), now=utcnow(), actor=Actor.importer("t")
        )

    # a line that is not on the invoice, or more than the line: refused with the CSV line
    with pytest.raises(ImportFailed) as failure:
        credits("C-1,CN-1,INV-C,2026-11-01,5.00,USD,3\nC-1,CN-2,INV-C,2026-11-01,20.01,USD,2\n")
    assert [(e.line, e.message) for e in failure.value.errors] == [
        (2, "line 3 is not on invoice 'INV-C'"),
        (
            3,
            "credit note of 20.01 USD is more than the 20.00 USD not yet credited on line 2 "
            "of invoice 'INV-C'",
        ),
    ]
    # a credit naming line 2 counts against that line; re-importing it changes nothing
    assert credits("C-1,CN-3,INV-C,2026-11-01,15.00,USD,2\n").created == 1
    assert credits("C-1,CN-3,INV-C,2026-11-01,15.00,USD,2\n").unchanged == 1
    with pytest.raises(ImportFailed) as failure:
        credits("C-1,CN-3,INV-C,2026-11-01,15.00,USD,1\n")
    assert "already imported with different details" in failure.value.errors[0].message
    invoice = db.session.scalars(select(Invoice).where(Invoice.number == "INV-C")).one()
    assert [(b.credited.minor, b.disputable.minor) for b in line_balances(invoice)] == [
        (0, 10000),
        (1500, 500),
    ]


def test_an_imported_credit_note_cannot_credit_what_an_open_dispute_holds(request_ctx):
    """Review finding: an ERP credit naming a line an open dispute holds credited the line
    twice once staff accepted (and meanwhile held the undisputed line out of `payable`)."""
    from portal.disputes.services import accept
    from portal.invoices.balances import invoice_balance

    make_customer(account_number="H-1", timezone="America/New_York")
    _import(
        "H-1,INV-H,2026-10-01,2026-10-31,USD,1,Widgets,1,100.00,\n"
        "H-1,INV-H,2026-10-01,2026-10-31,USD,2,Fee,1,100.00,\n"
    )
    invoice = db.session.scalars(select(Invoice).where(Invoice.number == "INV-H")).one()
    dispute = _dispute(invoice, {1: Money.from_decimal("60.00", "USD")}, utcnow())
    header = (
        "account_number,credit_note_reference,invoice_number,issued_on,amount,currency,"
        "line_number\n"
    )

    def credits(text):
        return import_file(
            "credit-notes", io.StringIO(header + text), now=utcnow(), actor=Actor.importer("t")
        )

    # when the ERP credits line 1 in full while 60.00 of it is held by the open dispute
    with pytest.raises(ImportFailed) as failure:
        credits("H-1,CN-H1,INV-H,2026-11-01,100.00,USD,1\n")
    # then it is refused, naming the dispute; what is not held can still be credited
    assert [(e.line, e.message) for e in failure.value.errors] == [
        (
            2,
            "credit note of 100.00 USD is more than the 40.00 USD not yet credited or "
            f"disputed on line 1 of invoice 'INV-H' (dispute {dispute.id} is open)",
        )
    ]
    assert credits("H-1,CN-H2,INV-H,2026-11-01,40.00,USD,1\n").created == 1
    # and accepting the dispute then credits line 1 exactly once in all: 100.00
    accept(dispute, actor=STAFF, now=utcnow())
    db.session.expire_all()
    balance = invoice_balance(invoice, date(2026, 11, 2))
    assert (balance.credited.minor, balance.payable.minor) == (10000, 10000)
