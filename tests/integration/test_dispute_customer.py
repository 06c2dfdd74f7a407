"""The customer's dispute pages over HTTP: their own disputes only, CSRF, every upload
attack through the real form (nothing saved), holds shown on the invoice and account."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_babel import force_locale
from sqlalchemy import func, select
from werkzeug.test import encode_multipart

from portal.audit.actors import Actor
from portal.customers.models import Customer
from portal.db import utcnow
from portal.disputes import services
from portal.disputes.evidence import accept_uploads
from portal.disputes.models import Dispute, DisputeFile, DisputeLine, DisputeMessage
from portal.extensions import db
from portal.invoices.models import Invoice
from portal.money import Money
from tests import evidence_files as files
from tests.factories import (
    csrf_token_from,
    login_as,
    make_customer,
    make_invoice,
    make_payment,
    make_staff,
)

THREE_LINES = [("Pallet of rivets", "1", "100.00"), ("Broken crate", "1", "40.00"),
               ("Delivery", "1", "10.00")]  # fmt: skip


@pytest.fixture
def uploads(app: Flask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "uploads"
    monkeypatch.setitem(app.config, "UPLOAD_DIR", str(directory))
    return directory


@pytest.fixture
def signed_in(client: FlaskClient, uploads: Path) -> Iterator[tuple[Customer, Invoice]]:
    customer = make_customer(timezone="UTC")
    invoice = make_invoice(
        customer, number="INV-3L", issue_date=date(2026, 10, 1), lines=THREE_LINES
    )
    db.session.commit()
    login_as(client, customer)
    return customer, invoice


def _count(model: type) -> int:
    return db.session.scalar(select(func.count()).select_from(model)) or 0


def _stored(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def _nothing_saved(uploads: Path) -> None:
    db.session.expire_all()
    assert _count(Dispute) == 0
    assert _count(DisputeLine) == 0
    assert _count(DisputeMessage) == 0
    assert _count(DisputeFile) == 0
    assert _stored(uploads) == []


def _form_token(client: FlaskClient, number: str = "INV-3L") -> str:
    page = client.get(f"/invoices/{number}/dispute")
    assert page.status_code == 200
    return csrf_token_from(page.text)


def _post_dispute(
    client: FlaskClient,
    *,
    lines: dict[int, str] | None = None,
    evidence: list[tuple[bytes, str, str]] | None = None,
    reason: str = "damaged",
    message: str = "The crate arrived broken.",
    number: str = "INV-3L",
    token: str | None = None,
):  # type: ignore[no-untyped-def]
    data: dict[str, object] = {
        "csrf_token": token if token is not None else _form_token(client, number),
        "reason": reason,
        "message": message,
    }
    for line_number, amount in (lines if lines is not None else {2: ""}).items():
        data[f"line-{line_number}"] = "y"
        data[f"amount-{line_number}"] = amount
    data["evidence"] = [files.upload(body, name, kind) for body, name, kind in evidence or []]
    return post_multipart(client, f"/invoices/{number}/dispute", data)


def post_multipart(client: FlaskClient, url: str, data: dict[str, object]):  # type: ignore[no-untyped-def]
    """A multipart POST encoded in memory: the test client spools a body over 500 KB to
    a temporary file that it never closes (an unraisable warning, an error here)."""
    boundary, body = encode_multipart(data)
    return client.post(url, data=body, content_type=f"multipart/form-data; boundary={boundary}")


def _dispute_of(customer: Customer, invoice: Invoice, line_numbers: dict[int, Money | None]):  # type: ignore[no-untyped-def]
    dispute = services.open_dispute(
        customer,
        invoice,
        line_numbers,
        "damaged",
        "Opened in a test.",
        [],
        actor=Actor.customer(customer),
        now=utcnow(),
    )
    db.session.commit()
    return dispute


# --- the form ----------------------------------------------------------------------------
def test_the_form_shows_each_line_with_what_can_be_disputed(client: FlaskClient, signed_in) -> None:  # type: ignore[no-untyped-def]
    page = client.get("/invoices/INV-3L/dispute").text
    for number in (1, 2, 3):
        assert f'name="line-{number}"' in page
        assert f'name="amount-{number}"' in page
    for reason in ("not_received", "damaged", "wrong_price", "duplicate", "not_ordered", "other"):
        assert f'value="{reason}"' in page
    assert 'name="evidence"' in page
    assert "multiple" in page
    assert "Leave empty to dispute all you can on “Broken crate”: $40.00." in page
    assert 'enctype="multipart/form-data"' in page


def test_a_customer_disputes_one_line_with_a_photo_and_the_rest_stays_payable(
    client: FlaskClient, signed_in, uploads: Path
) -> None:  # type: ignore[no-untyped-def]
    customer, invoice = signed_in
    # when
    response = _post_dispute(client, evidence=[(files.jpeg_photo(), "crate.jpg", "image/jpeg")])
    # then
    assert response.status_code == 303
    dispute = db.session.scalar(select(Dispute))
    assert response.headers["Location"] == f"/disputes/{dispute.id}"
    assert (dispute.customer_id, dispute.invoice_id, dispute.status) == (
        customer.id,
        invoice.id,
        "open",
    )
    assert [(line.line_number, line.amount_minor) for line in dispute.lines] == [(2, 4000)]
    [stored] = dispute.files
    assert (stored.content_type, stored.original_name) == ("image/jpeg", "crate.jpg")
    assert _stored(uploads) == [stored.storage_name]
    page = client.get(f"/disputes/{dispute.id}").text
    assert "We received your dispute of $40.00." in page
    assert "The crate arrived broken." in page
    assert "crate.jpg" in page
    invoice_page = client.get("/invoices/INV-3L").text
    payable_now = re.search(
        r'id="payable-now">\s*<dt>Payable now</dt>\s*<dd[^>]*>([^<]+)<', invoice_page
    )
    assert payable_now
    assert payable_now.group(1) == "$110.00"
    assert "In dispute: $40.00" in invoice_page
    account = client.get("/account").text
    assert "Your open disputes" in account
    assert f'href="/disputes/{dispute.id}"' in account


def test_part_of_a_line_can_be_disputed_with_a_decimal_comma(
    client: FlaskClient, signed_in
) -> None:  # type: ignore[no-untyped-def]
    assert _post_dispute(client, lines={1: "12,50"}).status_code == 303
    assert db.session.scalar(select(DisputeLine.amount_minor)) == 1250


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ({1: "100.01"}, "You can dispute at most $100.00 on this line."),
        ({1: "abc"}, "Please enter the amount as a number, for example 120.50."),
        ({1: "0"}, "Please enter an amount greater than zero."),
        ({1: "1.005"}, "Please enter the amount with at most 2 decimals."),
        ({}, "Please tick at least one line you dispute."),
    ],
    ids=["too-much", "not-a-number", "zero", "too-precise", "no-line"],
)
def test_a_bad_choice_of_lines_shows_the_form_again_and_saves_nothing(
    client: FlaskClient, signed_in, uploads: Path, lines, message
) -> None:  # type: ignore[no-untyped-def]
    response = _post_dispute(
        client, lines=lines, evidence=[(files.clean_pdf(), "note.pdf", "application/pdf")]
    )
    assert response.status_code == 400
    assert message in response.text
    assert "Please choose them again." in response.text  # the files are not kept
    _nothing_saved(uploads)


def test_an_amount_on_a_line_left_unticked_is_questioned(client: FlaskClient, signed_in) -> None:  # type: ignore[no-untyped-def]
    token = _form_token(client)
    response = client.post(
        "/invoices/INV-3L/dispute",
        data={"csrf_token": token, "reason": "other", "message": "x", "line-1": "y",
              "amount-3": "5"},
    )  # fmt: skip
    assert response.status_code == 400
    assert "Tick this line to dispute it, or clear the amount." in response.text
    assert _count(Dispute) == 0


def test_reason_and_message_are_required(client: FlaskClient, signed_in) -> None:  # type: ignore[no-untyped-def]
    response = _post_dispute(client, reason="", message="")
    assert response.status_code == 400
    assert "Please choose what is wrong." in response.text
    assert "Please tell us what happened." in response.text
    response = _post_dispute(client, reason="because", message="x" * 5001)
    assert "Please keep your message to at most 5000 characters." in response.text
    assert _count(Dispute) == 0


# --- upload attacks through the real form -----------------------------------------------
SIX_PDFS = [(files.clean_pdf(), f"page {n}.pdf", "application/pdf") for n in range(6)]
TEN_MB_AND_ONE = files.clean_pdf() + b"%" + b"x" * (10 * 1024 * 1024 - len(files.clean_pdf()))


@pytest.mark.parametrize(
    ("evidence", "message"),
    [
        ([(files.zip_archive(), "proof.pdf", "application/pdf")], "“proof.pdf” is not a PDF"),
        ([(files.HTML_PAGE, "proof.pdf", "application/pdf")], "“proof.pdf” is not a PDF"),
        ([(files.SVG_IMAGE, "proof.pdf", "application/pdf")], "“proof.pdf” is not a PDF"),
        (
            [(files.clean_pdf() + files.zip_archive(), "poly.pdf", "application/pdf")],
            "“poly.pdf” holds more than one kind of file",
        ),
        (
            [(files.clean_pdf() + files.HTML_PAGE, "poly.pdf", "application/pdf")],
            "“poly.pdf” holds more than one kind of file",
        ),
        (
            [(files.jpeg_photo() + files.zip_archive(), "photo.jpg", "image/jpeg")],
            "“photo.jpg” holds more than one kind of file",
        ),
        (
            [(files.pdf_with_javascript(), "form.pdf", "application/pdf")],
            "“form.pdf” is a PDF with scripts",
        ),
        (
            [(files.pdf_with_javascript_in_object_stream(), "form.pdf", "application/pdf")],
            "“form.pdf” is a PDF with scripts",
        ),
        ([(files.encrypted_pdf(), "locked.pdf", "application/pdf")], "password-protected"),
        ([(files.png_bomb(), "bomb.png", "image/png")], "too many pixels"),
        ([(TEN_MB_AND_ONE, "big.pdf", "application/pdf")], "“big.pdf” is larger than 10 MB"),
        ([(b"", "empty.pdf", "application/pdf")], "“empty.pdf” is empty"),
        (SIX_PDFS, "at most 5 can be sent"),
        (
            [
                (files.jpeg_photo(), "good.jpg", "image/jpeg"),
                (files.pdf_with_attachment(), "bad.pdf", "application/pdf"),
            ],
            "“bad.pdf” is a PDF with scripts",
        ),
    ],
    ids=[
        "zip-as-pdf",
        "html-as-pdf",
        "svg-as-pdf",
        "pdf+zip",
        "pdf+html",
        "jpeg+zip",
        "pdf-javascript",
        "pdf-object-stream",
        "encrypted",
        "bomb",
        "over-10mb",
        "empty",
        "sixth-file",
        "good-then-bad",
    ],
)
def test_an_upload_attack_through_the_form_saves_nothing(
    client: FlaskClient, signed_in, uploads: Path, evidence, message
) -> None:  # type: ignore[no-untyped-def]
    response = _post_dispute(client, evidence=evidence)
    assert response.status_code == 400
    assert message in response.text
    assert 'name="line-2"' in response.text  # the form again, to correct
    _nothing_saved(uploads)


def test_a_refusal_by_the_service_removes_the_files_already_stored(
    client: FlaskClient, signed_in, uploads: Path
) -> None:  # type: ignore[no-untyped-def]
    """Each line may be disputed up to what the invoice leaves to pay, but not two lines
    beyond it together: the service says so after the files were stored, and they go."""
    customer, invoice = signed_in
    make_payment(customer, [(invoice, "120.00")])
    db.session.commit()
    page = client.get("/invoices/INV-3L/dispute").text
    assert "Leave empty to dispute all you can on “Pallet of rivets”: $30.00." in page
    response = _post_dispute(
        client,
        lines={1: "", 2: ""},
        evidence=[(files.clean_pdf(), "late.pdf", "application/pdf")],
    )
    assert response.status_code == 400
    assert "You can dispute at most $30.00 on this invoice." in response.text
    _nothing_saved(uploads)


def test_a_request_larger_than_the_limit_gets_a_friendly_413(
    app: Flask, client: FlaskClient, signed_in, monkeypatch: pytest.MonkeyPatch, uploads: Path
) -> None:  # type: ignore[no-untyped-def]
    assert app.config["UPLOAD_MAX_CONTENT_LENGTH"] == 5 * 10 * 1024 * 1024 + 1024 * 1024
    token = _form_token(client)
    monkeypatch.setitem(app.config, "UPLOAD_MAX_CONTENT_LENGTH", 1024 * 1024)
    response = _post_dispute(
        client, token=token, evidence=[(b"%PDF-" + b"x" * 2 * 1024 * 1024, "a.pdf", "x")]
    )
    assert response.status_code == 413
    assert "What you sent is too large" in response.text
    assert "Traceback" not in response.text
    _nothing_saved(uploads)


def test_only_the_evidence_forms_take_large_bodies(
    client: FlaskClient, signed_in, uploads: Path
) -> None:  # type: ignore[no-untyped-def]
    """A 2 MiB body is refused (413) on any other form, before anything reads it; the
    dispute form takes the same body (and refuses the file on its merits, 400)."""
    token = _form_token(client)
    big = {"csrf_token": token, "message": "x" * (2 * 1024 * 1024)}
    assert client.post("/sign-out", data=big).status_code == 413
    response = _post_dispute(
        client, token=token, evidence=[(b"%PDF-" + b"x" * 2 * 1024 * 1024, "a.pdf", "x")]
    )
    assert response.status_code == 400
    _nothing_saved(uploads)


def test_without_a_csrf_token_nothing_is_saved(
    client: FlaskClient, signed_in, uploads: Path
) -> None:  # type: ignore[no-untyped-def]
    response = _post_dispute(
        client, token="", evidence=[(files.clean_pdf(), "a.pdf", "application/pdf")]
    )
    assert response.status_code == 400
    assert "Your session has expired" in response.text
    _nothing_saved(uploads)


def test_disputes_are_rate_limited_per_account(
    app: Flask, client: FlaskClient, uploads: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "DISPUTE_RATE_LIMIT", "2 per hour")
    customer = make_customer()
    for n in range(3):
        make_invoice(customer, number=f"INV-R{n}", lines=THREE_LINES)
    db.session.commit()
    login_as(client, customer)
    assert _post_dispute(client, number="INV-R0", lines={}).status_code == 400  # costs nothing
    assert _post_dispute(client, number="INV-R0").status_code == 303
    assert _post_dispute(client, number="INV-R1").status_code == 303
    token = _form_token(client, "INV-R2")
    response = _post_dispute(client, number="INV-R2", token=token)
    assert response.status_code == 429
    assert _count(Dispute) == 2


# --- only one's own ----------------------------------------------------------------------
def test_another_customers_invoice_dispute_and_files_are_not_found(
    client: FlaskClient, signed_in, uploads: Path
) -> None:  # type: ignore[no-untyped-def]
    customer, invoice = signed_in
    other = make_customer()
    other_invoice = make_invoice(other, number="INV-OTHER", lines=THREE_LINES)
    db.session.commit()
    theirs = services.open_dispute(
        other, other_invoice, {1: None}, "damaged", "theirs",
        accept_uploads([files.upload(files.clean_pdf(), "theirs.pdf")]),
        actor=Actor.customer(other), now=utcnow(),
    )  # fmt: skip
    db.session.commit()
    mine = _dispute_of(customer, invoice, {1: None})
    token = csrf_token_from(client.get(f"/disputes/{mine.id}").text)
    [their_file] = theirs.files
    assert client.get("/invoices/INV-OTHER/dispute").status_code == 404
    assert (
        client.post(
            "/invoices/INV-OTHER/dispute",
            data={"csrf_token": token, "line-1": "y", "reason": "other", "message": "x"},
        ).status_code
        == 404
    )
    assert client.get(f"/disputes/{theirs.id}").status_code == 404
    assert client.get(f"/disputes/{theirs.id}/files/{their_file.id}").status_code == 404
    assert client.get(f"/disputes/{mine.id}/files/{their_file.id}").status_code == 404
    assert (
        client.post(
            f"/disputes/{theirs.id}/reply", data={"csrf_token": token, "message": "hi"}
        ).status_code
        == 404
    )
    assert (
        client.post(
            f"/disputes/{theirs.id}/withdraw", data={"csrf_token": token, "confirm": "y"}
        ).status_code
        == 404
    )
    db.session.expire_all()
    assert db.session.get(Dispute, theirs.id).status == "open"
    assert len(db.session.get(Dispute, theirs.id).messages) == 1
    assert client.get("/disputes/2147483648").status_code == 404


def test_signed_out_visitors_are_sent_to_their_email(client: FlaskClient, uploads: Path) -> None:
    customer = make_customer()
    invoice = make_invoice(customer, number="INV-SO", lines=THREE_LINES)
    db.session.commit()
    dispute = _dispute_of(customer, invoice, {1: None})
    for url in ("/invoices/INV-SO/dispute", f"/disputes/{dispute.id}"):
        assert client.get(url).status_code == 401


def test_a_staff_session_does_not_open_customer_dispute_pages(
    staff_client: FlaskClient, uploads: Path
) -> None:
    customer = make_customer()
    invoice = make_invoice(customer, number="INV-ST", lines=THREE_LINES)
    db.session.commit()
    dispute = _dispute_of(customer, invoice, {1: None})
    assert staff_client.get(f"/disputes/{dispute.id}").status_code in (401, 403)


# --- the dispute's page ------------------------------------------------------------------
def test_a_file_is_downloaded_as_a_sandboxed_attachment(
    client: FlaskClient, signed_in, uploads: Path
) -> None:  # type: ignore[no-untyped-def]
    _post_dispute(client, evidence=[(files.clean_pdf(), "Lieferschein März.pdf", "x/y")])
    dispute = db.session.scalar(select(Dispute))
    [stored] = dispute.files
    page = client.get(f"/disputes/{dispute.id}").text
    url = f"/disputes/{dispute.id}/files/{stored.id}"
    assert f'href="{url}" download' in page
    response = client.get(url)
    assert response.status_code == 200
    assert response.data == files.clean_pdf()
    assert response.headers["Content-Type"] == "application/pdf"
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="Lieferschein M?rz.pdf"; '
        "filename*=UTF-8''Lieferschein%20M%C3%A4rz.pdf"
    )
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "private, no-store"


def test_staff_ask_and_the_customer_answers_with_text_and_a_file(
    client: FlaskClient, signed_in, uploads: Path
) -> None:  # type: ignore[no-untyped-def]
    customer, invoice = signed_in
    dispute = _dispute_of(customer, invoice, {2: None})
    staff = make_staff()
    services.ask_for_information(
        dispute, "Could you send a photo of the crate?", actor=Actor.staff(staff), now=utcnow()
    )
    db.session.commit()
    page = client.get(f"/disputes/{dispute.id}").text
    assert "Could you send a photo of the crate?" in page
    assert "Answer our question" in page
    assert "We need more information from you." in page
    token = csrf_token_from(page)
    # a refused file: nothing of the answer is kept
    refused = client.post(
        f"/disputes/{dispute.id}/reply",
        data={"csrf_token": token, "message": "Here it is",
              "evidence": [(io.BytesIO(files.HTML_PAGE), "crate.pdf", "application/pdf")]},
        content_type="multipart/form-data",
    )  # fmt: skip
    assert refused.status_code == 400
    assert "“crate.pdf” is not a PDF, PNG or JPEG file" in refused.text
    assert len(db.session.get(Dispute, dispute.id).messages) == 2
    assert _stored(uploads) == []
    # an empty answer
    empty = client.post(f"/disputes/{dispute.id}/reply", data={"csrf_token": token})
    assert "Please write an answer or choose a file to send." in empty.text
    # a good one
    answered = client.post(
        f"/disputes/{dispute.id}/reply",
        data={"csrf_token": token, "message": "Here it is",
              "evidence": [(io.BytesIO(files.jpeg_photo()), "crate.jpg", "image/jpeg")]},
        content_type="multipart/form-data",
    )  # fmt: skip
    assert answered.status_code == 303
    db.session.expire_all()
    dispute = db.session.get(Dispute, dispute.id)
    assert dispute.status == "open"
    last = dispute.messages[-1]
    assert (last.body, last.author, [f.original_name for f in last.files]) == (
        "Here it is",
        f"customer:{customer.id}",
        ["crate.jpg"],
    )
    assert _stored(uploads) == [last.files[0].storage_name]


def test_the_customer_withdraws_after_confirming(client: FlaskClient, signed_in) -> None:  # type: ignore[no-untyped-def]
    customer, invoice = signed_in
    dispute = _dispute_of(customer, invoice, {2: None})
    page = client.get(f"/disputes/{dispute.id}").text
    assert "I no longer dispute these charges" in page
    token = csrf_token_from(page)
    unconfirmed = client.post(f"/disputes/{dispute.id}/withdraw", data={"csrf_token": token})
    assert unconfirmed.status_code == 400
    assert "Please tick the box to confirm." in unconfirmed.text
    assert db.session.get(Dispute, dispute.id).status == "open"
    done = client.post(
        f"/disputes/{dispute.id}/withdraw", data={"csrf_token": token, "confirm": "y"}
    )
    assert done.status_code == 303
    db.session.expire_all()
    assert db.session.get(Dispute, dispute.id).status == "withdrawn"
    page = client.get(f"/disputes/{dispute.id}").text
    assert "You withdrew this dispute. The $40.00 you disputed is payable again." in page
    assert "Withdraw dispute" not in page
    invoice_page = client.get("/invoices/INV-3L").text
    assert "Payable now" not in invoice_page  # nothing held any more
    assert "Your open disputes" not in client.get("/account").text


def test_a_line_in_dispute_cannot_be_disputed_twice(client: FlaskClient, signed_in) -> None:  # type: ignore[no-untyped-def]
    customer, invoice = signed_in
    _dispute_of(customer, invoice, {2: None})
    page = client.get("/invoices/INV-3L/dispute").text
    assert 'name="line-2"' not in page
    assert "$40.00 of this line is already in dispute." in page
    response = _post_dispute(client, lines={2: ""})
    assert response.status_code == 400
    assert _count(Dispute) == 1


def test_the_thank_you_message_shows_the_amount_in_the_customers_language(
    client: FlaskClient, uploads: Path
) -> None:
    """Review finding: after the dispute's email was queued (rendered under force_locale),
    the flash said "su disputa de $40.00" in a Spanish page (current_locale fell back to
    English once Flask-Babel had restored an unset locale)."""
    customer = make_customer(timezone="UTC", locale="es")
    make_invoice(customer, number="INV-3L", issue_date=date(2026, 10, 1), lines=THREE_LINES)
    db.session.commit()
    login_as(client, customer)
    response = _post_dispute(client, lines={2: ""})
    assert response.status_code == 303
    page = client.get(response.headers["Location"]).text
    assert "Hemos recibido su disputa de 40,00" in page
    assert "$40.00" not in page


def test_the_reply_by_date_and_times_on_the_page_are_the_customers_local_ones(
    client: FlaskClient, uploads: Path
) -> None:
    """Review finding: the email said "reply by Dec 13" (the customer's day) while the
    page said Dec 14 (the UTC day), and the page's times were UTC for a New York
    customer."""
    from datetime import UTC, datetime

    from portal.notifications.models import OutboxMessage

    customer = make_customer(timezone="America/New_York")
    invoice = make_invoice(
        customer, number="INV-3L", issue_date=date(2026, 10, 1), lines=THREE_LINES
    )
    asked = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)  # Nov 29, 9:00 PM in New York
    dispute = services.open_dispute(
        customer, invoice, {2: None}, "damaged", "", [],
        actor=Actor.customer(customer), now=asked,
    )  # fmt: skip
    services.ask_for_information(
        dispute, "A photo, please?", actor=Actor.staff(make_staff()), now=asked
    )
    db.session.commit()
    login_as(client, customer)
    page = client.get(f"/disputes/{dispute.id}").text
    email = db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.kind == "dispute_info_requested")
    ).one()
    assert "Please reply by Dec 13, 2026." in email.body_text
    assert "Please answer below by Dec 13, 2026." in page
    assert "Nov 29, 2026" in page  # sent on the customer's day, not Nov 30 (UTC)
    times = re.findall(r"<time datetime=[^>]*>([^<]*)</time>", page)
    assert times == ["11/29/26, 9:00\u202fPM", "11/29/26, 9:00\u202fPM"]  # New York, not UTC


def test_several_open_disputes_of_an_invoice_have_links_that_say_which(
    client: FlaskClient, signed_in
) -> None:  # type: ignore[no-untyped-def]
    """Review finding: an invoice with several open disputes showed the same link text,
    "See your dispute (Open)", for each (WCAG 2.4.4: a link's purpose from its text)."""
    customer, invoice = signed_in
    first = _dispute_of(customer, invoice, {1: Money.from_decimal("30.00", "USD")})
    second = _dispute_of(customer, invoice, {2: None})
    page = client.get("/invoices/INV-3L").text
    links = re.findall(r'<a href="/disputes/(\d+)">([^<]*)</a>', page)
    assert sorted(links) == [
        (str(first.id), "See your dispute of $30.00 (Open)"),
        (str(second.id), "See your dispute of $40.00 (Open)"),
    ]


@pytest.mark.parametrize(
    ("locale", "open_dispute", "open_invoice"),
    [("fr", "En cours", "À régler"), ("es", "Abierta", "Pendiente"), ("de", "Offen", "Offen")],
)
def test_an_open_dispute_is_not_called_an_invoice_to_pay(
    client: FlaskClient, uploads: Path, locale: str, open_dispute: str, open_invoice: str
) -> None:
    """A phone tester read « À régler » (to be paid) on an open dispute, beside « vous
    n'avez pas à le payer »: one "Open" served invoices and disputes alike."""
    from portal.disputes.models import STATUS_LABELS, DisputeStatus
    from portal.invoices.models import InvoiceStatus

    customer = make_customer(timezone="UTC", locale=locale)
    make_invoice(customer, number="INV-3L", issue_date=date(2026, 10, 1), lines=THREE_LINES)
    db.session.commit()
    login_as(client, customer)
    response = _post_dispute(client, lines={2: ""})
    page = client.get(response.headers["Location"]).text
    assert f">{open_dispute}<" in page
    with force_locale(locale):
        assert str(STATUS_LABELS[DisputeStatus.OPEN]) == open_dispute
        assert InvoiceStatus.OPEN.label == open_invoice
