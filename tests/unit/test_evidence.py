"""Evidence uploads: what is accepted is cleaned; every attack is refused, nothing written."""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from flask import Flask
from PIL import Image
from pypdf import PdfReader

from portal.disputes import evidence
from portal.disputes.evidence import EvidenceRefused, accept_uploads, discard, evidence_response
from portal.disputes.storage_types import StoredEvidence
from tests import evidence_files as files
from tests.evidence_files import upload


@pytest.fixture
def store(app: Flask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """UPLOAD_DIR in a fresh directory (not yet created: the code creates it)."""
    directory = tmp_path / "uploads"
    monkeypatch.setitem(app.config, "UPLOAD_DIR", str(directory))
    with app.test_request_context("/"):
        yield directory


def _written(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def _refused(store: Path, uploads: list, reason: str) -> EvidenceRefused:  # type: ignore[type-arg]
    with pytest.raises(EvidenceRefused) as caught:
        accept_uploads(uploads)
    assert caught.value.reason == reason
    assert _written(store) == []  # nothing, not even a temporary file
    return caught.value


# --- accepted, and cleaned -------------------------------------------------------------
def test_a_clean_pdf_is_stored_as_sent_under_a_random_name(store: Path) -> None:
    data = files.clean_pdf()
    [stored] = accept_uploads([upload(data, "delivery note.pdf")])
    assert stored.content_type == "application/pdf"
    assert stored.original_name == "delivery note.pdf"
    assert (stored.size_bytes, stored.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert _written(store) == [stored.storage_name]
    assert len(stored.storage_name) == 32
    assert "delivery" not in stored.storage_name
    assert (store / stored.storage_name).read_bytes() == data
    assert (store / stored.storage_name).stat().st_mode & 0o777 == 0o600


def test_a_jpeg_is_reencoded_without_exif_gps_or_comment_and_kept_upright(store: Path) -> None:
    data = files.jpeg_photo((64, 48))
    assert b"PhoneMaker" in data
    assert b"secret comment" in data
    [stored] = accept_uploads([upload(data, "photo.JPG", "image/jpeg")])
    kept = (store / stored.storage_name).read_bytes()
    assert stored.content_type == "image/jpeg"
    assert stored.original_name == "photo.JPG"
    assert b"PhoneMaker" not in kept
    assert b"secret comment" not in kept
    assert b"Exif" not in kept
    assert stored.sha256 == hashlib.sha256(kept).hexdigest()
    assert stored.size_bytes == len(kept)
    with Image.open(io.BytesIO(kept)) as image:
        assert image.format == "JPEG"
        assert image.size == (48, 64)  # orientation 6 applied before EXIF was dropped
        assert not image.getexif()


def test_a_png_is_reencoded_without_its_text_chunks(store: Path) -> None:
    data = files.png_image()
    assert b"someone@example.com" in data
    [stored] = accept_uploads([upload(data, "screenshot.png", "image/png")])
    kept = (store / stored.storage_name).read_bytes()
    assert b"someone@example.com" not in kept
    with Image.open(io.BytesIO(kept)) as image:
        assert (image.format, image.size) == ("PNG", (40, 30))


def test_the_type_comes_from_the_content_and_the_name_follows_it(store: Path) -> None:
    [stored] = accept_uploads([upload(files.png_image(), "scan.pdf", "application/pdf")])
    assert (stored.content_type, stored.original_name) == ("image/png", "scan.png")


def test_a_jpeg_with_a_trailer_keeps_only_its_pixels(store: Path) -> None:
    """A phone's trailer (or a script) after the JPEG's end marker is dropped by the
    re-encoding: the stored file is the picture alone."""
    data = files.jpeg_photo() + files.HTML_PAGE
    [stored] = accept_uploads([upload(data, "photo.jpg", "image/jpeg")])
    kept = (store / stored.storage_name).read_bytes()
    assert b"<script>" not in kept
    assert kept.endswith(b"\xff\xd9")


def test_names_are_sanitized(store: Path) -> None:
    evil = "../../etc/passwd\u202egpj.pdf"  # a path and a right-to-left override
    [stored] = accept_uploads([upload(files.clean_pdf(), evil)])
    assert stored.original_name == "passwdgpj.pdf"
    long_name = "a" * 300 + ".pdf"
    [stored] = accept_uploads([upload(files.clean_pdf(), long_name)])
    assert len(stored.original_name) == 200
    assert stored.original_name.endswith(".pdf")
    [stored] = accept_uploads([upload(files.clean_pdf(), "...")])
    assert stored.original_name == "evidence.pdf"


def test_no_file_chosen_is_no_upload(store: Path) -> None:
    """A form sent without a file still carries one empty part with no name."""
    assert accept_uploads([upload(b"", "", "application/octet-stream")]) == []
    assert _written(store) == []


def test_five_files_are_accepted(store: Path) -> None:
    stored = accept_uploads([upload(files.clean_pdf(), f"page {n}.pdf") for n in range(5)])
    assert len(stored) == 5
    assert len(set(_written(store))) == 5


# --- refused: nothing written ----------------------------------------------------------
def test_a_sixth_file_is_refused(store: Path) -> None:
    six = [upload(files.clean_pdf(), f"page {n}.pdf") for n in range(6)]
    error = _refused(store, six, "too_many")
    assert "at most 5" in error.message
    assert "“page 5.pdf”" in error.message


def test_a_file_over_ten_megabytes_is_refused(store: Path) -> None:
    data = files.clean_pdf()
    big = data + b"%" + b"x" * (10 * 1024 * 1024 - len(data))  # 10 MiB + 1 byte
    assert len(big) == 10 * 1024 * 1024 + 1
    error = _refused(store, [upload(big, "big.pdf")], "too_large")
    assert error.message == "“big.pdf” is larger than 10 MB. Please send a smaller file."


def test_a_file_of_exactly_the_limit_is_read_whole(store: Path, app: Flask) -> None:
    app.config["EVIDENCE_MAX_BYTES"], limit = (
        len(files.clean_pdf()),
        app.config["EVIDENCE_MAX_BYTES"],
    )
    try:
        assert len(accept_uploads([upload(files.clean_pdf(), "exact.pdf")])) == 1
    finally:
        app.config["EVIDENCE_MAX_BYTES"] = limit


def test_an_empty_file_is_refused(store: Path) -> None:
    error = _refused(store, [upload(b"", "empty.pdf")], "empty")
    assert "“empty.pdf” is empty" in error.message


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (files.zip_archive(), "statement.pdf"),
        (files.HTML_PAGE, "statement.pdf"),
        (files.SVG_IMAGE, "statement.pdf"),
        (files.gif_image(), "photo.jpg"),
        (b"Just some text, not a PDF at all.\n", "notes.pdf"),
        (b"<html>" + files.clean_pdf(), "prepended.pdf"),  # the header must start the file
        (b"MZ\x90\x00\x03\x00\x00\x00" + b"\x00" * 200, "invoice.pdf"),  # a Windows program
    ],
    ids=["zip", "html", "svg", "gif", "text", "html-before-pdf", "exe"],
)
def test_anything_but_pdf_png_or_jpeg_is_refused_whatever_its_name(
    store: Path, data: bytes, name: str
) -> None:
    error = _refused(store, [upload(data, name)], "type")
    assert f"“{name}” is not a PDF, PNG or JPEG file" in error.message


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (files.clean_pdf() + files.zip_archive(), "pdf-then-zip.pdf"),
        (files.clean_pdf() + files.HTML_PAGE, "pdf-then-html.pdf"),
        (files.clean_pdf() + files.SVG_IMAGE, "pdf-then-svg.pdf"),
        (files.hand_written_pdf(b"(<html><script>alert(1)</script></html>)"), "inside.pdf"),
        (files.jpeg_photo() + files.zip_archive(), "photo-then-zip.jpg"),
        (files.png_image() + files.zip_archive(), "image-then-zip.png"),
    ],
    ids=["pdf+zip", "pdf+html", "pdf+svg", "html-in-pdf", "jpeg+zip", "png+zip"],
)
def test_a_polyglot_is_refused(store: Path, data: bytes, name: str) -> None:
    if data.startswith(b"%PDF") and b"PK" in data:
        assert zipfile.is_zipfile(io.BytesIO(data))  # an unzip tool really opens it
    error = _refused(store, [upload(data, name)], "polyglot")
    assert f"“{name}” holds more than one kind of file" in error.message


@pytest.mark.parametrize(
    "build",
    [
        files.pdf_with_javascript,
        files.pdf_with_open_action_uri,
        files.pdf_with_attachment,
        files.pdf_with_hex_escaped_javascript,
        files.pdf_with_launch_action,
        files.pdf_with_xfa_form,
        files.pdf_with_submit_form,
        files.pdf_with_javascript_in_object_stream,
    ],
    ids=lambda build: build.__name__,
)
def test_a_pdf_with_active_content_is_refused(store: Path, build) -> None:  # type: ignore[no-untyped-def]
    data = build()
    assert len(PdfReader(io.BytesIO(data)).pages) == 1  # a real, readable PDF
    error = _refused(store, [upload(data, "form.pdf")], "active")
    assert "“form.pdf” is a PDF with scripts, actions, forms or attached files" in error.message


def test_the_object_stream_attack_is_found_by_parsing_not_by_bytes(store: Path) -> None:
    data = files.pdf_with_javascript_in_object_stream()
    assert b"JavaScript" not in data
    assert b"/JS" not in data
    _refused(store, [upload(data, "hidden.pdf")], "active")


def test_an_encrypted_pdf_is_refused(store: Path) -> None:
    error = _refused(store, [upload(files.encrypted_pdf(), "locked.pdf")], "encrypted")
    assert "password-protected" in error.message


def test_a_damaged_pdf_or_image_is_refused(store: Path) -> None:
    truncated_jpeg = files.jpeg_photo((200, 200))[:400]
    _refused(store, [upload(truncated_jpeg, "cut.jpg")], "unreadable")
    no_end = files.clean_pdf().replace(b"%%EOF", b"")
    _refused(store, [upload(no_end, "cut.pdf")], "unreadable")
    _refused(store, [upload(b"%PDF-1.7\n%%EOF\n", "hollow.pdf")], "unreadable")


def test_a_decompression_bomb_is_refused_before_it_is_decoded(store: Path) -> None:
    data = files.png_bomb()
    assert len(data) < 100_000  # 900 million pixels in a few kilobytes
    error = _refused(store, [upload(data, "bomb.png")], "image_too_large")
    assert "too many pixels" in error.message


def test_one_bad_file_among_good_ones_stores_none(store: Path) -> None:
    batch = [
        upload(files.clean_pdf(), "good.pdf"),
        upload(files.jpeg_photo(), "good.jpg"),
        upload(files.pdf_with_javascript(), "bad.pdf"),
    ]
    error = _refused(store, batch, "active")
    assert "“bad.pdf”" in error.message


def test_a_failed_write_removes_what_was_written(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = evidence._write
    calls = []

    def failing(directory: Path, item):  # type: ignore[no-untyped-def]
        calls.append(item)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_write(directory, item)

    monkeypatch.setattr(evidence, "_write", failing)
    with pytest.raises(OSError, match="disk full"):
        accept_uploads([upload(files.clean_pdf(), "a.pdf"), upload(files.clean_pdf(), "b.pdf")])
    assert _written(store) == []


def test_discard_removes_the_files_and_ignores_missing_or_foreign_names(store: Path) -> None:
    stored = accept_uploads([upload(files.clean_pdf(), "a.pdf")])
    outside = store.parent / "keep.txt"
    outside.write_text("not ours")
    discard([*stored, StoredEvidence("../keep.txt", "x", "application/pdf", 1, "0" * 64)])
    discard(stored)  # twice: already gone
    assert _written(store) == []
    assert outside.exists()


# --- served ----------------------------------------------------------------------------
def test_a_file_is_served_as_an_attachment_that_cannot_run(store: Path) -> None:
    [stored] = accept_uploads([upload(files.clean_pdf(), "Lieferschein März.pdf")])
    response = evidence_response(SimpleNamespace(**{
        "storage_name": stored.storage_name,
        "original_name": stored.original_name,
        "content_type": stored.content_type,
    }))  # fmt: skip
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="Lieferschein M?rz.pdf"; '
        "filename*=UTF-8''Lieferschein%20M%C3%A4rz.pdf"
    )
    assert response.headers["Content-Type"] == "application/pdf"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "private, no-store"
    assert response.get_data() == files.clean_pdf()


def test_a_missing_file_or_a_strange_storage_name_is_not_found(store: Path) -> None:
    from werkzeug.exceptions import NotFound

    for name in ("A" * 32, "../../etc/passwd", ""):
        with pytest.raises(NotFound):
            evidence_response(
                SimpleNamespace(storage_name=name, original_name="x", content_type="image/png")
            )


def test_bytes_inside_stream_data_are_not_read_as_names_or_markup(store: Path) -> None:
    """Compressed stream data holds any bytes, "/JS" and "<svg" included, by chance: only
    the document's structure (and the objects pypdf reads) counts."""
    noise = b"x\x9c/JS /AA <svg <html \x00\xff"
    data = files.hand_written_pdf(
        b"<< /Length %d >>\nstream\n" % len(noise) + noise + b"\nendstream"
    )
    [stored] = accept_uploads([upload(data, "scan.pdf")])
    assert (store / stored.storage_name).read_bytes() == data
