"""Row locks for payments, and the one place that knows SQLite has none.

Lock order (PostgreSQL row locks; on SQLite a write takes the single writer lock):
  0. the inbox's claimed `webhook_events` rows (SKIP LOCKED: nobody waits for them)
  1. the customers' `payment_accounts` rows  (`lock_account`, `lock_accounts`: ascending
     customer ids)
  2. the `checkouts` row(s)                  (`lock_checkout`, `lock_checkouts`: ascending
     ids)
  3. inserts: payments, payment_allocations, refunds, links, audit, outbox; the event's
     outcome.
Foreign keys lock too: writing a row that references a checkout takes a KEY SHARE lock
on it, which waits for a FOR UPDATE, so no such write may come before step 2 (the
webhook event's checkout id is written only with its outcome; tests/integration/
test_payment_races.py found the deadlock this prevents).

Calls to Stripe are made with no lock held, except when settling a checkout that was
abandoned in flight (`services._settle_stale`, rare) and for refunds, which keep the
customer's lock across the call so that two refunds cannot both spend what is left to
refund; both are bounded by STRIPE_TIMEOUT_SECONDS.

The same order as Saleor's `lock_objects.py`: every writer takes the locks through these
functions, so that a reader of one place can check there is no cycle.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload, selectinload

from portal.extensions import db
from portal.payments.models import Checkout, PaymentAccount


def has_row_locks() -> bool:
    """False on SQLite (development), which has one writer lock for the whole database.

    The one "is this SQLite?" question of the payments code: where it is False, a write
    (`take_writer_lock`) serializes what FOR UPDATE would.
    """
    return db.session.get_bind().dialect.name != "sqlite"


def take_writer_lock() -> None:
    """SQLite only: take the database's single writer lock now, before reading.

    A read transaction that later writes can be refused at once ("database is locked")
    when another connection committed meanwhile; taking the lock first makes it wait
    (busy_timeout) instead. A no-op UPDATE on one table is enough.
    """
    if not has_row_locks():
        db.session.execute(
            update(PaymentAccount)
            .where(PaymentAccount.id == -1)
            .values(customer_id=PaymentAccount.customer_id)
        )


def lock_account(customer_id: int) -> PaymentAccount | None:
    """Lock 1: the customer's payment account row, held to the end of the transaction.

    PostgreSQL: SELECT … FOR UPDATE. SQLite has no row locks: a write takes the
    database's one writer lock, so a no-op UPDATE gives the same serialization.
    """
    query = (
        select(PaymentAccount)
        .where(PaymentAccount.customer_id == customer_id)
        .execution_options(populate_existing=True)
    )
    if not has_row_locks():
        db.session.execute(
            update(PaymentAccount)
            .where(PaymentAccount.customer_id == customer_id)
            .values(customer_id=PaymentAccount.customer_id)
        )
        return db.session.scalar(query)
    return db.session.scalar(query.with_for_update())


def lock_account_row(customer_id: int) -> PaymentAccount:
    """Lock 1, creating the customer's payment account row first if they have none yet.

    For services that must serialize with payments although the customer may never have
    paid by card (opening a dispute reads what is payable): without the row, FOR UPDATE
    would lock nothing. Two transactions creating it at once: the second waits on the
    unique customer_id, its insert fails once the first commits, and it then locks the
    row the first made.
    """
    account = lock_account(customer_id)
    if account is not None:
        return account
    try:
        with db.session.begin_nested():
            db.session.add(PaymentAccount(customer_id=customer_id))
    except IntegrityError:
        pass  # another transaction created it first: lock that one
    account = lock_account(customer_id)
    if account is None:  # pragma: no cover - the row exists by now
        raise LookupError(f"no payment account for customer {customer_id}")
    return account


def lock_accounts(customer_ids: Iterable[int]) -> dict[int, PaymentAccount]:
    """Lock 1, for several customers: ascending, as two batches must agree on the order.

    On SQLite the caller holds the writer lock already (`take_writer_lock`).
    """
    wanted = sorted(set(customer_ids))
    if not wanted:
        return {}
    query = (
        select(PaymentAccount)
        .where(PaymentAccount.customer_id.in_(wanted))
        .order_by(PaymentAccount.customer_id)
        .execution_options(populate_existing=True)
    )
    if has_row_locks():
        query = query.with_for_update()
    return {account.customer_id: account for account in db.session.scalars(query)}


def lock_checkout(checkout_id: int) -> Checkout | None:
    """Lock 2: a checkout row (and only it), re-read with its customer, never from the
    identity map's copy. None if there is no such checkout."""
    return db.session.scalar(
        select(Checkout)
        .where(Checkout.id == checkout_id)
        .options(joinedload(Checkout.customer, innerjoin=True))
        .with_for_update(of=Checkout)
        .execution_options(populate_existing=True)
    )


def lock_checkouts(checkout_ids: Iterable[int]) -> dict[int, Checkout]:
    """Lock 2, for several checkouts: ascending, each read afresh with what applying needs."""
    wanted = sorted(set(checkout_ids))
    if not wanted:
        return {}
    query = (
        select(Checkout)
        .where(Checkout.id.in_(wanted))
        .order_by(Checkout.id)
        .options(joinedload(Checkout.customer, innerjoin=True), selectinload(Checkout.invoices))
        .execution_options(populate_existing=True)
    )
    if has_row_locks():
        query = query.with_for_update(of=Checkout)
    return {checkout.id: checkout for checkout in db.session.scalars(query).unique()}
