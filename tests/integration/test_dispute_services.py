"""Disputes: the state machine, the holds, credits and balances (services, no HTTP)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from portal.audit.actors import Actor
from portal.audit.models import AuditEvent
from portal.disputes.models import (
    TRANSITIONS,
    Dispute,
    DisputeFile,
    DisputeStatus,
    MessageKind,
    can_move,
)
from portal.disputes.queries import (
    QueueFilters,
    dispute_queue,
    disputes_for,
    get_dispute_for,
    open_dispute_count,
)
from portal.disputes.services import (
    DisputeRefused,
    DisputeTransitionRefused,
    accept,
    accept_in_part,
    ask_for_information,
    flag_overdue_replies,
    open_dispute,
    reject,
    reply,
    withdraw,
)
from portal.disputes.storage_types import StoredEvidence
from portal.extensions import db
from portal.invoices.balances import invoice_balance, line_balances, payable_invoices
from portal.invoices.models import CreditNote, CreditNoteKind
from portal.money import Money
from portal.notifications.models import OutboxMessage
from portal.payments.queries import payable_items
from tests.factories import (
    make_checkout_in_flight,
    make_credit,
    make_customer,
    make_invoice,
    make_payment,
)

NOW = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)  # 10:00 in New York
TODAY = date(2026, 11, 2)
STAFF = Actor("staff", "3")


@pytest.fixture(autouse=True)
def _request(app, db_session):
    with app.test_request_context():
        yield


def usd(text: str) -> Money:
    return Money.from_decimal(text, "USD")


def three_lines(customer=None):
    """An invoice of 100.00 + 50.00 + 25.00 = 175.00."""
    customer = customer or make_customer()
    return make_invoice(
        customer,
        lines=[("Widgets", "1", "100.00"), ("Gadgets", "2", "25.00"), ("Fee", "1", "25.00")],
    )


def _open(invoice, lines=None, *, reason="damaged", message="Broken on arrival", files=()):
    customer = invoice.customer
    return open_dispute(
        customer,
        invoice,
        {2: None} if lines is None else lines,
        reason,
        message,
        files,
        actor=Actor.customer(customer),
        now=NOW,
    )


def _emails(dispute):
    return list(
        db.session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.customer_id == dispute.customer_id)
            .order_by(OutboxMessage.id)
        )
    )


def _audits(dispute):
    return list(
        db.session.scalars(
            select(AuditEvent.action)
            .where(AuditEvent.subject_type == "disputes", AuditEvent.subject_id == dispute.id)
            .order_by(AuditEvent.id)
        )
    )


# --- opening and holds ------------------------------------------------------------------
def test_opening_a_dispute_holds_the_line_and_leaves_the_rest_payable():
    # given an invoice of three lines, 175.00
    invoice = three_lines()
    # when the customer disputes line 2 (50.00) in full
    dispute = _open(invoice)
    # then 50.00 is held, 125.00 payable, the balance unchanged
    balance = invoice_balance(invoice, TODAY)
    assert (balance.balance, balance.held, balance.payable) == (
        usd("175.00"),
        usd("50.00"),
        usd("125.00"),
    )
    assert balance.is_in_dispute
    assert dispute.status == DisputeStatus.OPEN
    assert dispute.amount == usd("50.00")
    assert [
        (b.line.line_number, b.held.minor, b.disputable.minor) for b in line_balances(invoice)
    ] == [
        (1, 0, 10000),
        (2, 5000, 0),
        (3, 0, 2500),
    ]
    # and the pay flow and the reminders see only the payable 125.00
    assert [i.payable for i in payable_items(invoice.customer, TODAY)] == [usd("125.00")]
    assert {p.invoice.id: p.payable for p in payable_invoices()}[invoice.id] == usd("125.00")
    # and the thread starts with the customer's message
    assert [(m.kind, m.body, m.author) for m in dispute.messages] == [
        (MessageKind.MESSAGE, "Broken on arrival", f"customer:{invoice.customer_id}")
    ]


def test_part_of_a_line_can_be_disputed_and_the_rest_of_it_later():
    invoice = three_lines()
    first = _open(invoice, {1: usd("30.00")})
    assert invoice_balance(invoice, TODAY).payable == usd("145.00")
    second = _open(invoice, {1: None})  # the rest of line 1: 70.00
    assert second.amount == usd("70.00")
    assert first.amount + second.amount == usd("100.00")
    assert line_balances(invoice)[0].disputable == Money.zero("USD")
    with pytest.raises(DisputeRefused, match="nothing left to dispute"):
        _open(invoice, {1: usd("0.01")})


def test_a_dispute_never_holds_more_than_is_payable_on_the_invoice():
    # given 160.00 of the 175.00 already paid
    invoice = three_lines()
    make_payment(invoice.customer, [(invoice, "160.00")])
    # then each line may be disputed up to the 15.00 left, and never more in total
    assert [b.disputable for b in line_balances(invoice)] == [usd("15.00")] * 3
    with pytest.raises(DisputeRefused, match="at most"):
        _open(invoice, {1: usd("15.01")})
    with pytest.raises(DisputeRefused, match="at most"):
        _open(invoice, {1: usd("10.00"), 2: usd("10.00")})
    dispute = _open(invoice, {1: None})
    assert dispute.amount == usd("15.00")
    assert invoice_balance(invoice, TODAY).payable == Money.zero("USD")


def test_a_credit_on_a_line_reduces_what_may_be_disputed_on_it():
    invoice = three_lines()
    credit = make_credit(invoice, "20.00")
    credit.invoice_line_id = invoice.lines[0].id
    db.session.flush()
    assert line_balances(invoice)[0].credited == usd("20.00")
    assert line_balances(invoice)[0].disputable == usd("80.00")


@pytest.mark.parametrize(
    ("lines", "reason", "message", "refusal"),
    [
        ({}, "damaged", "", "at least one line"),
        ({9: None}, "damaged", "", "Line 9 is not on this invoice"),
        ({1: usd("0")}, "damaged", "", "more than zero"),
        ({1: usd("-1.00")}, "damaged", "", "more than zero"),
        ({1: usd("100.01")}, "damaged", "", "at most"),
        ({1: Money(100, "EUR")}, "damaged", "", "USD"),
        ({1: None}, "because", "", "reason from the list"),
        ({1: None}, "damaged", "x" * 5001, "5000 characters"),
    ],
)
def test_a_bad_dispute_is_refused_and_nothing_is_written(lines, reason, message, refusal):
    invoice = three_lines()
    with pytest.raises(DisputeRefused, match=refusal):
        _open(invoice, lines, reason=reason, message=message)
    assert db.session.scalar(select(Dispute.id)) is None
    assert db.session.scalar(select(OutboxMessage.id)) is None


def test_someone_elses_invoice_cannot_be_disputed():
    invoice = three_lines()
    stranger = make_customer()
    with pytest.raises(DisputeRefused, match="not part of your account"):
        open_dispute(
            stranger,
            invoice,
            {1: None},
            "damaged",
            "",
            (),
            actor=Actor.customer(stranger),
            now=NOW,
        )


def test_paid_or_void_invoices_cannot_be_disputed():
    paid = three_lines()
    make_payment(paid.customer, [(paid, "175.00")])
    with pytest.raises(DisputeRefused, match="nothing left"):
        _open(paid)
    void = three_lines()
    void.voided_at = NOW
    db.session.flush()
    with pytest.raises(DisputeRefused, match="nothing left"):
        _open(void)


def test_a_dispute_waits_for_a_card_charge_of_the_invoice_in_flight():
    invoice = three_lines()
    checkout = make_checkout_in_flight(
        invoice.customer, [invoice], 17500, updated_at=NOW - timedelta(minutes=1)
    )
    with pytest.raises(DisputeRefused, match="payment of this invoice is in progress"):
        _open(invoice)
    # a checkout left in flight long ago (a closed 3-D Secure window) does not block
    checkout.updated_at = NOW - timedelta(hours=1)
    db.session.flush()
    assert _open(invoice).amount == usd("50.00")


def test_evidence_files_are_recorded_with_the_opening_message():
    evidence = StoredEvidence("a" * 32, "photo.jpg", "image/jpeg", 1234, "f" * 64)
    dispute = _open(three_lines(), files=[evidence])
    [stored] = db.session.scalars(select(DisputeFile)).all()
    assert (stored.dispute_id, stored.message_id) == (dispute.id, dispute.messages[0].id)
    assert (stored.original_name, stored.content_type, stored.size_bytes) == (
        "photo.jpg",
        "image/jpeg",
        1234,
    )


def test_more_than_five_files_are_refused():
    files = [StoredEvidence(f"{n:032d}", "a.pdf", "application/pdf", 1, "0" * 64) for n in range(6)]
    with pytest.raises(DisputeRefused, match="at most 5 files"):
        _open(three_lines(), files=files)


# --- decisions: credits and balances ----------------------------------------------------
def test_accepting_credits_each_disputed_line_and_clears_the_hold():
    invoice = three_lines()
    dispute = _open(invoice, {1: usd("40.00"), 2: None})
    accept(dispute, actor=STAFF, now=NOW + timedelta(days=1))
    notes = db.session.scalars(select(CreditNote).order_by(CreditNote.id)).all()
    assert [
        (n.kind, n.invoice_line_id, n.dispute_id, n.amount_minor, n.reference) for n in notes
    ] == [
        (CreditNoteKind.DISPUTE, invoice.lines[0].id, dispute.id, 4000, f"DSP-{dispute.id}-L1"),
        (CreditNoteKind.DISPUTE, invoice.lines[1].id, dispute.id, 5000, f"DSP-{dispute.id}-L2"),
    ]
    balance = invoice_balance(invoice, TODAY)
    assert (balance.credited, balance.held, balance.balance, balance.payable) == (
        usd("90.00"),
        Money.zero("USD"),
        usd("85.00"),
        usd("85.00"),
    )
    assert dispute.status == DisputeStatus.ACCEPTED
    assert dispute.resolved_by == "staff:3"
    assert dispute.credited == usd("90.00")
    assert [b.credited for b in line_balances(invoice)] == [usd("40.00"), usd("50.00"), usd("0")]
    # a credited line can still be disputed for what is left of it
    assert line_balances(invoice)[0].disputable == usd("60.00")


def test_accepting_in_part_credits_less_and_makes_the_rest_payable_again():
    invoice = three_lines()
    dispute = _open(invoice, {1: usd("40.00"), 2: None})  # 90.00 held
    accept_in_part(
        dispute, {2: usd("20.00")}, "One gadget was fine.", actor=STAFF, now=NOW + timedelta(days=1)
    )
    balance = invoice_balance(invoice, TODAY)
    assert (balance.credited, balance.held, balance.payable) == (
        usd("20.00"),
        Money.zero("USD"),
        usd("155.00"),
    )
    assert dispute.status == DisputeStatus.PARTLY_ACCEPTED
    assert dispute.resolution_reason == "One gadget was fine."
    assert [(line.line_number, line.credited_minor) for line in dispute.lines] == [
        (1, 0),
        (2, 2000),
    ]
    assert dispute.messages[-1].kind == MessageKind.DECISION


@pytest.mark.parametrize(
    ("credits", "refusal"),
    [
        ({2: usd("50.00")}, "less than"),  # the whole amount: that is accept
        ({2: usd("0")}, "more than zero"),
        ({}, "more than zero"),
        ({2: usd("50.01")}, "between zero and"),
        ({1: usd("1.00")}, "not part of this dispute"),
    ],
)
def test_a_bad_credit_in_part_is_refused(credits, refusal):
    dispute = _open(three_lines())
    with pytest.raises(DisputeRefused, match=refusal):
        accept_in_part(dispute, credits, "reason", actor=STAFF, now=NOW)
    assert dispute.status == DisputeStatus.OPEN
    assert db.session.scalar(select(CreditNote.id)) is None


def test_rejecting_makes_the_whole_amount_payable_again_with_a_reason():
    invoice = three_lines()
    dispute = _open(invoice)
    reject(dispute, "Delivery was signed for.", actor=STAFF, now=NOW + timedelta(days=1))
    balance = invoice_balance(invoice, TODAY)
    assert (balance.held, balance.payable) == (Money.zero("USD"), usd("175.00"))
    assert dispute.resolution_reason == "Delivery was signed for."
    assert dispute.resolved_at == NOW + timedelta(days=1)
    assert db.session.scalar(select(CreditNote.id)) is None


def test_a_decision_needs_a_reason_the_customer_can_read():
    dispute = _open(three_lines())
    with pytest.raises(DisputeRefused, match="reason"):
        reject(dispute, "  ", actor=STAFF, now=NOW)
    with pytest.raises(DisputeRefused, match="2000 characters"):
        reject(dispute, "x" * 2001, actor=STAFF, now=NOW)
    assert dispute.status == DisputeStatus.OPEN


def test_withdrawing_makes_the_amount_payable_again():
    invoice = three_lines()
    dispute = _open(invoice)
    withdraw(dispute, actor=Actor.customer(invoice.customer), now=NOW)
    assert dispute.status == DisputeStatus.WITHDRAWN
    assert invoice_balance(invoice, TODAY).payable == usd("175.00")


# --- asking, replying, flagging ---------------------------------------------------------
def test_asking_waits_on_the_customer_whose_reply_hands_it_back(app):
    dispute = _open(three_lines())
    ask_for_information(dispute, "Can you send a photo?", actor=STAFF, now=NOW)
    assert dispute.status == DisputeStatus.WAITING_ON_CUSTOMER
    assert dispute.reply_due_at == NOW + timedelta(days=app.config["DISPUTE_REPLY_DAYS"])
    # still held while waiting
    assert invoice_balance(dispute.invoice, TODAY).held == usd("50.00")
    reply(dispute, "Here it is.", (), actor=Actor.customer(dispute.customer), now=NOW)
    assert dispute.status == DisputeStatus.OPEN
    assert dispute.reply_due_at is None
    assert [m.kind for m in dispute.messages] == [
        MessageKind.MESSAGE,
        MessageKind.INFO_REQUEST,
        MessageKind.MESSAGE,
    ]


def test_a_reply_with_too_many_files_changes_nothing():
    dispute = _open(three_lines())
    ask_for_information(dispute, "Photos?", actor=STAFF, now=NOW)
    files = [StoredEvidence(f"{n:032d}", "a.png", "image/png", 1, "0" * 64) for n in range(6)]
    with pytest.raises(DisputeRefused, match="at most 5 files"):
        reply(dispute, "Six photos", files, actor=Actor.customer(dispute.customer), now=NOW)
    assert dispute.status == DisputeStatus.WAITING_ON_CUSTOMER
    assert len(dispute.messages) == 2


def test_a_reply_needs_text_or_a_file():
    dispute = _open(three_lines())
    with pytest.raises(DisputeRefused, match="message or attach"):
        reply(dispute, " ", (), actor=Actor.customer(dispute.customer), now=NOW)
    evidence = StoredEvidence("b" * 32, "receipt.pdf", "application/pdf", 10, "e" * 64)
    reply(dispute, "", [evidence], actor=Actor.customer(dispute.customer), now=NOW)
    assert dispute.messages[-1].files[0].original_name == "receipt.pdf"


def test_the_jobs_runner_flags_a_question_left_unanswered_once(app):
    dispute = _open(three_lines())
    ask_for_information(dispute, "Which box?", actor=STAFF, now=NOW)
    due = dispute.reply_due_at
    assert flag_overdue_replies(now=due) == 0  # not yet past
    assert flag_overdue_replies(now=due + timedelta(minutes=1)) == 1
    assert dispute.status == DisputeStatus.OPEN
    assert dispute.flagged_at == due + timedelta(minutes=1)
    assert dispute.messages[-1].kind == MessageKind.SYSTEM
    assert flag_overdue_replies(now=due + timedelta(days=1)) == 0
    assert [e.kind for e in _emails(dispute)].count("dispute_flagged") == 1
    assert _audits(dispute).count("dispute.flagged") == 1


def test_the_flag_job_is_registered():
    from portal.jobs.registry import JOBS

    assert "flag_dispute_replies" in JOBS


# --- the state machine ------------------------------------------------------------------
ALL = list(DisputeStatus)
OPEN, WAITING = DisputeStatus.OPEN, DisputeStatus.WAITING_ON_CUSTOMER

# The issue's machine, written out: open -> waiting on customer <-> open -> accepted |
# partly accepted | rejected | withdrawn; nothing leaves a decided dispute.
EXPECTED_MOVES = {
    (OPEN, WAITING),
    (WAITING, OPEN),
    *((s, d) for s in (OPEN, WAITING) for d in ALL[2:]),
}


@pytest.mark.parametrize("start", ALL)
@pytest.mark.parametrize("to", ALL)
def test_transition_table_is_the_issues_machine(start, to):
    assert can_move(start, to) == ((start, to) in EXPECTED_MOVES)
    assert (to in TRANSITIONS[start]) == ((start, to) in EXPECTED_MOVES)


def _put_in(dispute, status):
    dispute.status = status
    if status == WAITING:
        dispute.reply_due_at = NOW + timedelta(days=14)
    if status not in (OPEN, WAITING):
        dispute.resolved_at = NOW
    db.session.flush()


def _ask(d):
    ask_for_information(d, "Question?", actor=STAFF, now=NOW)


def _reply(d):
    reply(d, "Answer.", (), actor=Actor.customer(d.customer_id), now=NOW)


def _withdraw(d):
    withdraw(d, actor=Actor.customer(d.customer_id), now=NOW)


def _accept(d):
    accept(d, actor=STAFF, now=NOW)


def _accept_in_part(d):
    accept_in_part(d, {2: usd("10.00")}, "In part.", actor=STAFF, now=NOW)


def _reject(d):
    reject(d, "No.", actor=STAFF, now=NOW)


# action -> (the status it leads to from `open`/`waiting`, the statuses it is allowed from)
ACTIONS = {
    "ask": (_ask, WAITING, {OPEN}),
    "reply": (_reply, OPEN, {OPEN, WAITING}),
    "withdraw": (_withdraw, DisputeStatus.WITHDRAWN, {OPEN, WAITING}),
    "accept": (_accept, DisputeStatus.ACCEPTED, {OPEN, WAITING}),
    "accept_in_part": (_accept_in_part, DisputeStatus.PARTLY_ACCEPTED, {OPEN, WAITING}),
    "reject": (_reject, DisputeStatus.REJECTED, {OPEN, WAITING}),
}


@pytest.mark.parametrize("status", ALL)
@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_every_status_and_action(status, action):
    run, lands_in, allowed_from = ACTIONS[action]
    dispute = _open(three_lines())
    _put_in(dispute, status)
    emails_before, audits_before = len(_emails(dispute)), len(_audits(dispute))
    if status in allowed_from:
        run(dispute)
        assert dispute.status == lands_in
        # exactly one email and one audit row per step
        assert len(_emails(dispute)) == emails_before + 1
        assert len(_audits(dispute)) == audits_before + 1
    else:
        with pytest.raises(DisputeTransitionRefused) as refused:
            run(dispute)
        assert "cannot be changed" in refused.value.message
        assert dispute.status == status
        assert len(_emails(dispute)) == emails_before
        assert db.session.scalar(select(CreditNote.id)) is None


# --- emails and audit -------------------------------------------------------------------
def test_each_step_emails_the_customer_once_with_a_link_to_the_dispute():
    invoice = three_lines()
    dispute = _open(invoice)
    ask_for_information(dispute, "Photo please", actor=STAFF, now=NOW)
    reply(dispute, "Attached", (), actor=Actor.customer(invoice.customer), now=NOW)
    accept_in_part(dispute, {2: usd("10.00")}, "Partly right.", actor=STAFF, now=NOW)
    emails = _emails(dispute)
    assert [e.kind for e in emails] == [
        "dispute_opened",
        "dispute_info_requested",
        "dispute_replied",
        "dispute_partly_accepted",
    ]
    assert {e.link_target for e in emails} == {f"/disputes/{dispute.id}"}
    assert all(e.link_purpose == e.kind for e in emails)
    assert emails[0].subject == f"We received your dispute of invoice {invoice.number}"
    assert "$50.00" in emails[0].body_text
    assert "Photo please" in emails[1].body_text
    assert "$10.00 of the $50.00" in emails[3].body_text
    assert "$40.00 is payable again" in emails[3].body_text
    assert "Partly right." in emails[3].body_html
    assert _audits(dispute) == [
        "dispute.opened",
        "dispute.info_requested",
        "dispute.replied",
        "dispute.partly_accepted",
    ]


@pytest.mark.parametrize(
    ("locale", "subject"),
    [
        ("es", "Hemos recibido su disputa de la factura"),
        ("fr", "Nous avons reçu votre contestation de la facture"),
        ("de", "Wir haben Ihre Reklamation zur Rechnung"),
    ],
)
def test_dispute_emails_are_in_the_customers_language(locale, subject):
    invoice = three_lines(make_customer(locale=locale))
    dispute = _open(invoice)
    [email] = _emails(dispute)
    assert email.locale == locale
    assert email.subject.startswith(subject)


# --- queries ----------------------------------------------------------------------------
def test_queries_are_scoped_to_the_customer_and_the_queue_is_oldest_first():
    mine = _open(three_lines())
    other = open_dispute(
        (stranger := make_customer()),
        three_lines(stranger),
        {1: None},
        "not_received",
        "",
        (),
        actor=Actor.customer(stranger),
        now=NOW - timedelta(days=2),
    )
    assert get_dispute_for(mine.customer, mine.id) is mine
    assert get_dispute_for(mine.customer, other.id) is None
    assert disputes_for(mine.customer) == [mine]
    assert dispute_queue() == [other, mine]
    assert dispute_queue(QueueFilters(reason="not_received")) == [other]
    assert open_dispute_count() == 2
    reject(mine, "no", actor=STAFF, now=NOW)
    assert dispute_queue() == [other]
    assert dispute_queue(QueueFilters(status="rejected")) == [mine]
    assert open_dispute_count() == 1
    assert disputes_for(mine.customer, open_only=True) == []
