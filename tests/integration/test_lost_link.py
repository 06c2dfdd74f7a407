"""Lost-link recovery: the form stores the request and answers at once, the same way and
at the same cost whatever was asked; the worker matches it and mails the link."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import func, select

from portal.access.models import AccessLink, LinkRequest
from portal.access.services import (
    RECOVERY_LINK_INTERVAL,
    RECOVERY_LINKS_PER_HOUR,
    normalize_account_number,
    normalize_email,
)
from portal.audit.models import AuditEvent
from portal.customers.models import Customer
from portal.extensions import db, limiter
from portal.jobs.runner import run_jobs
from portal.notifications.models import OutboxMessage
from tests.factories import csrf_token_from, make_customer

NOON = datetime(2026, 11, 23, 17, 0, tzinfo=UTC)
LINK = re.compile(r"https://portal\.example\.test/l/[A-Za-z0-9_-]+")


def _worker(app, server, monkeypatch):
    monkeypatch.setitem(app.config, "SMTP_URL", server.url)

    def run(now: datetime = NOON):
        outcomes = run_jobs(now=now, runner="test-worker", force=True)
        assert {o.kind: o.outcome for o in outcomes}["match_link_requests"] == "ok", outcomes
        return server.received

    return run


@pytest.fixture
def worker(app, smtp_server, monkeypatch):
    """The real worker (`portal jobs run --once`) delivering to a real SMTP server."""
    return _worker(app, smtp_server, monkeypatch)


@pytest.fixture
def utf8_worker(app, smtputf8_server, monkeypatch):
    """The same, with a relay that takes addresses beyond ASCII (SMTPUTF8)."""
    return _worker(app, smtputf8_server, monkeypatch)


def _ask(client, email, account_number="", *, limited=False):
    if not limited:
        limiter.reset()  # the per-IP limit has its own test
    page = client.get("/link/new")
    return client.post(
        "/link/new",
        data={
            "csrf_token": csrf_token_from(page.text),
            "account_number": account_number,
            "email": email,
        },
    )


def _counts() -> dict[str, int]:
    return {
        model.__tablename__: db.session.scalar(select(func.count()).select_from(model))
        for model in (LinkRequest, AccessLink, OutboxMessage, AuditEvent, Customer)
    }


def _open(client, url: str):
    token_path = url.removeprefix("https://portal.example.test")
    landing = client.get(token_path)
    assert landing.status_code == 200
    return client.post(token_path, data={"csrf_token": csrf_token_from(landing.text)})


def _on_the_day():
    """The clock an hour after the worker's NOON: a mailed link lives ACCESS_LINK_TTL_DAYS
    from the worker's `now`, and a session from its sign-in, not from today's date."""
    return time_machine.travel(NOON + timedelta(hours=1), tick=False)


# --- the form: stored, answered at once, the same either way ------------------------------------
def test_the_form_stores_the_request_and_looks_nothing_up(client):
    make_customer(account_number="ACC-LOST", email="owner@example.com")
    before = _counts()
    response = _ask(client, " Owner@Example.com ", "acc lost")
    assert response.status_code == 302
    assert response.headers["Location"] == "/link/sent"
    after = _counts()
    assert after["link_requests"] == before["link_requests"] + 1
    assert {k: v for k, v in after.items() if k != "link_requests"} == {
        k: v for k, v in before.items() if k != "link_requests"
    }
    stored = db.session.scalar(select(LinkRequest))
    assert (stored.email, stored.account_key, stored.processed_at) == (
        "owner@example.com",
        "ACCLOST",
        None,
    )


def test_the_answer_and_its_writes_are_identical_whether_or_not_it_matches(client):
    make_customer(account_number="ACC-REAL", email="real@example.com")
    asks = [
        ("real@example.com", "ACC-REAL"),  # matches
        ("someone@example.com", "ACC-REAL"),  # wrong address
        ("real@example.com", "ACC-NOPE"),  # wrong account
        ("real@example.com", ""),  # address alone, matches
        ("nobody@example.com", ""),  # address alone, unknown
        ("josé@example.com", "ACC-REAL"),  # letters beyond ASCII: once a 500 on a match
    ]
    answers = []
    for email, account in asks:
        before = _counts()
        response = _ask(client, email, account)
        after = _counts()
        written = {k: after[k] - before[k] for k in after}
        answers.append((response.status_code, response.headers["Location"], written))
    assert len({repr(answer) for answer in answers}) == 1, answers
    assert answers[0][2]["link_requests"] == 1
    sent = client.get("/link/sent")
    assert "If the email address" in sent.text


def test_a_bad_address_is_explained_and_nothing_is_stored(client):
    response = _ask(client, "not-an-email", "ACC-1")
    assert response.status_code == 400
    assert "Please enter a valid email address." in response.text
    assert _counts()["link_requests"] == 0


def test_an_overlong_account_number_is_explained(client):
    response = _ask(client, "a@example.com", "9" * 65)
    assert response.status_code == 400
    assert "An account number has at most 64 characters." in response.text
    assert _counts()["link_requests"] == 0


def test_the_form_is_rate_limited_per_client(client):
    statuses = [_ask(client, "x@example.com", "ACC-X", limited=True).status_code for _ in range(7)]
    assert statuses[:5] == [302] * 5
    assert statuses[-1] == 429


# --- the worker: matches and mails -----------------------------------------------------------
def test_the_worker_mails_a_working_link_that_shows_the_account_number(client, worker):
    customer = make_customer(
        account_number="ACC-00012", email="Owner@Example.com", locale="fr", timezone="UTC"
    )
    _ask(client, "owner@example.com", "acc 000-12")
    (received,) = worker()
    assert received["To"] == "Owner@example.com"  # the domain as the sender writes it
    text = received.get_body(("plain",)).get_content()
    html = received.get_body(("html",)).get_content()
    assert "Votre numéro de client : ACC-00012" in text
    assert "ACC-00012" in html
    (url,) = set(LINK.findall(text))
    with _on_the_day():
        assert _open(client, url).headers["Location"] == "/account"
        assert client.get("/account").status_code == 200
    stored = db.session.scalar(select(LinkRequest))
    assert (stored.outcome, stored.links_sent) == ("sent", 1)
    link = db.session.scalar(select(AccessLink).where(AccessLink.customer_id == customer.id))
    assert link.purpose == "access_link"  # issued when the email was sent


@pytest.mark.parametrize(
    ("stored", "typed"),
    [
        ("ACC-00012", "acc-00012"),
        ("ACC-00012", "ACC 000 12"),
        ("ACC-00012", "acc00012"),
        ("acc 000 12", "ACC–00012"),  # an en dash, as word processors write it
        ("ACC-00012", "\u00a0ACC-00012\t"),
    ],
)
def test_account_numbers_match_regardless_of_case_spaces_and_dashes(client, worker, stored, typed):
    make_customer(account_number=stored, email="match@example.com", timezone="UTC")
    _ask(client, "match@example.com", typed)
    assert [m["To"] for m in worker()] == ["match@example.com"]


def test_a_different_account_number_sends_nothing(client, worker):
    make_customer(account_number="ACC-00012", email="match@example.com", timezone="UTC")
    _ask(client, "match@example.com", "ACC-00013")
    assert worker() == []
    assert db.session.scalar(select(LinkRequest)).outcome == "no_match"


def test_asking_by_address_alone_mails_each_account_of_that_address(client, worker):
    first = make_customer(account_number="ACC-A1", email="shared@example.com", timezone="UTC")
    second = make_customer(account_number="ACC-B2", email="SHARED@example.com", timezone="UTC")
    make_customer(account_number="ACC-C3", email="other@example.com", timezone="UTC")
    _ask(client, "Shared@Example.com")
    received = worker()
    assert sorted(m["To"] for m in received) == ["SHARED@example.com", "shared@example.com"]
    numbers = {
        number
        for m in received
        for number in re.findall(r"ACC-[A-C]\d", m.get_body(("plain",)).get_content())
    }
    assert numbers == {first.account_number, second.account_number}


def test_an_unknown_address_alone_sends_nothing(client, worker):
    make_customer(account_number="ACC-A1", email="known@example.com", timezone="UTC")
    _ask(client, "unknown@example.com")
    assert worker() == []


@pytest.mark.parametrize("typed", ["josé.núñez@example.com", "JOSÉ.NÚÑEZ@EXAMPLE.COM"])
def test_an_address_with_letters_beyond_ascii_gets_its_link(client, utf8_worker, typed):
    make_customer(account_number="ACC-JN", email="José.Núñez@example.com", timezone="UTC")
    response = _ask(client, typed, "ACC-JN")
    assert response.status_code == 302
    (received,) = utf8_worker()
    assert received["To"] == "José.Núñez@example.com"
    assert LINK.search(received.get_body(("plain",)).get_content())


def test_repeated_requests_within_minutes_send_one_link(client, worker):
    # three presses of the form within seconds, matched in one pass of the worker
    make_customer(account_number="ACC-TWICE", email="twice@example.com", timezone="UTC")
    for _ in range(3):
        _ask(client, "twice@example.com", "ACC-TWICE")
    assert len(worker()) == 1
    outcomes = db.session.scalars(select(LinkRequest.outcome).order_by(LinkRequest.id)).all()
    assert outcomes == ["sent", "capped", "capped"]
    # and one matched in a later pass a minute on is answered by that link too
    _ask(client, "twice@example.com", "ACC-TWICE")
    assert len(worker(NOON + timedelta(minutes=1))) == 1
    # once the interval is over, a new request gets a new link
    _ask(client, "twice@example.com", "ACC-TWICE")
    assert len(worker(NOON + RECOVERY_LINK_INTERVAL + timedelta(seconds=1))) == 2


def test_links_are_capped_per_account_and_hour_in_the_worker(client, worker, app):
    make_customer(account_number="ACC-FLOOD", email="flood@example.com", timezone="UTC")
    step = RECOVERY_LINK_INTERVAL + timedelta(seconds=1)
    for n in range(RECOVERY_LINKS_PER_HOUR + 2):
        _ask(client, "flood@example.com", "ACC-FLOOD")
        worker(NOON + n * step)
    assert len(worker(NOON + 5 * step)) == RECOVERY_LINKS_PER_HOUR
    outcomes = db.session.scalars(select(LinkRequest.outcome).order_by(LinkRequest.id)).all()
    assert outcomes == ["sent"] * RECOVERY_LINKS_PER_HOUR + ["capped"] * 2
    # an hour later the account may ask again
    _ask(client, "flood@example.com", "ACC-FLOOD")
    assert len(worker(NOON + timedelta(hours=1, minutes=1))) == RECOVERY_LINKS_PER_HOUR + 1


def test_links_use_the_configured_base_url_not_the_host_header(client, worker):
    make_customer(account_number="ACC-HOST", email="host@example.com", timezone="UTC")
    page = client.get("/link/new", headers={"Host": "evil.example"})
    client.post(
        "/link/new",
        data={
            "csrf_token": csrf_token_from(page.text),
            "account_number": "ACC-HOST",
            "email": "host@example.com",
        },
        headers={"Host": "evil.example"},
    )
    (received,) = worker()
    text = received.get_body(("plain",)).get_content()
    assert "evil.example" not in text
    assert LINK.search(text)


def test_every_customer_email_shows_the_account_number(client, worker):
    from tests.factories import make_invoice

    customer = make_customer(account_number="ACC-SHOWN", locale="de", timezone="UTC")
    make_invoice(customer, issue_date=NOON.date())  # the scheduler queues its notice
    (received,) = worker()
    assert "Ihre Kundennummer: ACC-SHOWN" in received.get_body(("plain",)).get_content()
    assert "Ihre Kundennummer: ACC-SHOWN" in received.get_body(("html",)).get_content()


@pytest.mark.parametrize(
    ("typed", "key"),
    [(" ACC-1 ", "ACC1"), ("acc\u20111", "ACC1"), ("ＡＣＣ－１", "ACC1"), ("", "")],
)
def test_normalize_account_number(typed, key):
    assert normalize_account_number(typed) == key


def test_normalize_email_keeps_every_letter():
    assert normalize_email("  José@Example.COM ") == "josé@example.com"
    assert normalize_email("jose\u0301@example.com") == "josé@example.com"  # NFD to NFC


def test_answered_requests_are_forgotten_after_30_days(client, worker):
    _ask(client, "old@example.com")
    worker(NOON)
    _ask(client, "new@example.com")
    worker(NOON + timedelta(days=30, minutes=1))
    kept = db.session.scalars(select(LinkRequest.email)).all()
    assert kept == ["new@example.com"]
