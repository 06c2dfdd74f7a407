"""The account page's rows (customers.queries.account_snapshot): each kind in its own
order, ties broken as the page has always broken them, from one statement."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from portal.customers.queries import AccountCard, account_snapshot
from portal.disputes.models import Dispute, DisputeLine, DisputeStatus
from portal.extensions import db
from portal.invoices.models import Invoice
from portal.notifications.models import EmailOptOut
from portal.payments.models import Payment, SavedCard
from portal.plans.models import PlanStatus
from portal.promises.models import Promise, PromiseInvoice, PromiseStatus
from tests.autopay_helpers import make_active_plan
from tests.factories import make_credit, make_customer, make_invoice, make_payment

TODAY = date(2026, 11, 30)
MOMENT = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def _dispute(customer, invoice: Invoice, status=DisputeStatus.OPEN) -> Dispute:  # type: ignore[no-untyped-def]
    is_open = status in (DisputeStatus.OPEN, DisputeStatus.WAITING_ON_CUSTOMER)
    dispute = Dispute(
        customer_id=customer.id,
        invoice_id=invoice.id,
        status=status.value,
        reason="damaged",
        opened_at=MOMENT,
        updated_at=MOMENT,
        reply_due_at=MOMENT if status == DisputeStatus.WAITING_ON_CUSTOMER else None,
        resolved_at=None if is_open else MOMENT,
    )
    dispute.lines.append(
        DisputeLine(invoice_line_id=invoice.lines[0].id, amount_minor=1000, currency="USD")
    )
    db.session.add(dispute)
    db.session.flush()
    return dispute


def _promise(customer, invoices: list[Invoice], status=PromiseStatus.OPEN) -> Promise:  # type: ignore[no-untyped-def]
    promise = Promise(
        customer_id=customer.id,
        amount_minor=2500,
        currency="USD",
        made_on=date(2026, 11, 20),
        promised_on=date(2026, 12, 10),
        status=status.value,
        source="customer",
        created_by="customer",
        resolved_at=None if status == PromiseStatus.OPEN else MOMENT,
    )
    promise.invoices.extend(PromiseInvoice(invoice_id=invoice.id) for invoice in invoices)
    db.session.add(promise)
    db.session.flush()
    return promise


def test_each_kind_comes_in_its_order_and_ties_are_broken_by_number_or_id(db_session):
    # given a customer whose rows tie on every date the page orders them by
    customer = make_customer(timezone="UTC")
    due = date(2026, 11, 10)
    second = make_invoice(customer, number="T-2", due_date=due)
    first = make_invoice(customer, number="T-1", due_date=due)
    earliest = make_invoice(customer, number="T-9", due_date=due - timedelta(days=5))
    spare = [make_invoice(customer, number=f"S-{n}", due_date=date(2026, 12, 1)) for n in range(4)]
    older = make_payment(customer, [(first, "1.00")], paid_on=date(2026, 11, 1))
    # several allocations: listed in the order they were recorded, not by invoice
    newer = make_payment(
        customer,
        [(second, "2.00"), (earliest, "3.00"), (first, "4.00")],
        paid_on=date(2026, 11, 5),
    )
    unallocated = Payment(
        customer_id=customer.id,
        reference="PAY-NONE",
        source="offline",
        amount_minor=500,
        currency="USD",
        paid_on=newer.paid_on,
    )
    db.session.add(unallocated)
    db.session.flush()
    credits = [make_credit(first, "0.50"), make_credit(second, "0.70")]  # same day
    disputes = [_dispute(customer, first), _dispute(customer, second)]  # same moment
    _dispute(customer, earliest, DisputeStatus.REJECTED)  # closed: not listed
    promises = [_promise(customer, [spare[1], spare[0]]), _promise(customer, [])]  # same day
    _promise(customer, [spare[2]], PromiseStatus.KEPT)  # not open: not listed
    plans = [
        make_active_plan(customer, [inv], [(date(2026, 12, 1), "10.00")], now=MOMENT)
        for inv in (spare[2], spare[3])
    ]  # created at the same moment
    # when
    snapshot = account_snapshot(customer, TODAY)
    # then invoices: oldest due first, the same day by number
    assert [i.number for i in snapshot.invoices] == [
        "T-9",
        "T-1",
        "T-2",
        "S-0",
        "S-1",
        "S-2",
        "S-3",
    ]
    # payments newest first, the same day the latest recorded first
    assert [p.id for p in snapshot.payments] == [unallocated.id, newer.id, older.id]
    assert snapshot.payments[0].allocations == []
    assert snapshot.payments[1].allocations == [("T-2", 200), ("T-9", 300), ("T-1", 400)]
    assert snapshot.payments[2].allocations == [("T-1", 100)]
    assert [c.reference for c in snapshot.credits] == [c.reference for c in reversed(credits)]
    assert [d.id for d in snapshot.disputes] == [d.id for d in reversed(disputes)]
    assert [d.amount_minor for d in snapshot.disputes] == [1000, 1000]
    # promises soonest first, the same day the first recorded first, with their invoices
    assert [p.id for p in snapshot.promises] == [p.id for p in promises]
    assert sorted(snapshot.promises[0].invoice_ids) == sorted([spare[0].id, spare[1].id])
    assert snapshot.promises[1].invoice_ids == []
    assert [p.id for p in snapshot.plans] == [p.id for p in reversed(plans)]
    assert snapshot.plan_held_invoice_ids == {spare[2].id, spare[3].id}
    assert snapshot.card is None
    assert snapshot.opted_out_at is None


def test_a_plan_that_ended_holds_nothing_and_the_card_and_opt_out_are_read(db_session):
    # given a cancelled plan (its invoices no longer held), a saved card, an opt-out
    customer = make_customer(timezone="UTC")
    invoice = make_invoice(customer, number="C-1")
    plan = make_active_plan(customer, [invoice], [(date(2026, 12, 1), "10.00")], now=MOMENT)
    plan.status = PlanStatus.CANCELLED
    plan.ended_at = MOMENT
    for covered in plan.invoices:
        covered.open_invoice_id = None
    db.session.add_all(
        [
            SavedCard(
                customer_id=customer.id,
                payment_method_id="pm_snapshot",
                brand="visa",
                last4="4242",
                exp_month=12,
                exp_year=2034,
            ),
            EmailOptOut(customer_id=customer.id, source="page", opted_out_at=MOMENT),
        ]
    )
    db.session.flush()
    # when
    snapshot = account_snapshot(customer, TODAY)
    # then
    assert [(p.id, p.status) for p in snapshot.plans] == [(plan.id, PlanStatus.CANCELLED)]
    assert snapshot.plan_held_invoice_ids == set()
    assert snapshot.card == AccountCard("visa", "4242", 12, 2034)
    assert snapshot.opted_out_at == MOMENT


def test_a_customer_with_nothing_yet_has_an_empty_snapshot(db_session):
    customer = make_customer(timezone="UTC")
    other = make_customer(timezone="UTC")  # someone else's rows are never read
    make_payment(other, [(make_invoice(other), "1.00")])
    db.session.add(EmailOptOut(customer_id=other.id, source="page"))
    db.session.flush()
    snapshot = account_snapshot(customer, TODAY)
    assert snapshot.invoices == snapshot.payments == snapshot.credits == []
    assert snapshot.disputes == snapshot.promises == snapshot.plans == []
    assert snapshot.plan_held_invoice_ids == set()
    assert snapshot.card is None
    assert snapshot.opted_out_at is None


def test_a_plan_holding_several_invoices_is_listed_once(db_session):
    customer = make_customer(timezone="UTC")
    invoices = [make_invoice(customer) for _ in range(3)]
    plan = make_active_plan(customer, invoices, [(date(2026, 12, 1), "300.00")], now=MOMENT)
    snapshot = account_snapshot(customer, TODAY)
    assert [p.id for p in snapshot.plans] == [plan.id]
    assert snapshot.plan_held_invoice_ids == {i.id for i in invoices}
