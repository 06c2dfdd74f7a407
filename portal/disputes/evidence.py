"""Evidence a customer uploads with a dispute: checked, cleaned, stored, served.

The rules (issue 12; OWASP File Upload Cheat Sheet):
- At most EVIDENCE_MAX_FILES files (5), each at most EVIDENCE_MAX_BYTES (10 MiB), none
  empty. Every file is checked before any is written: one refusal stores nothing.
- The type comes from the content (the `filetype` library reads the magic bytes), never
  from the name or the browser's Content-Type. PDF, PNG and JPEG only.
- PNG and JPEG are decoded and re-encoded with Pillow: what is stored is the pixels
  alone, without EXIF (a phone photo's GPS position), ICC profiles, comments, or any
  bytes after the image's end (a phone's trailer, a script). Images larger than
  EVIDENCE_MAX_PIXELS are refused before they are decoded (decompression bombs).
- PDFs cannot be re-encoded faithfully, so they are parsed with pypdf and refused when
  encrypted, when they carry active content (JavaScript, launch and submit actions,
  automatic actions, embedded files, rich media, XFA forms), when any bytes follow the
  last `%%EOF`, or when they hold HTML or SVG markup (read as a web page by a browser
  that sniffs).
- Polyglots: a file another reader would open as something else is refused. A zip
  archive is refused whatever it also is (a zip reader finds its directory at the end
  of the file, so a PDF or image with a zip appended opens as a zip): decided so for
  images too, although their re-encoding would drop the zip, because a file built to be
  two things is not evidence, and saying so beats keeping half of it silently. HTML or
  SVG before a PDF's header make it no PDF (the header must start the file); anything
  after its last `%%EOF` is refused.
- Stored under UPLOAD_DIR (outside `static/`, shared by the app servers) under a random
  name, each file written to a temporary name and renamed, so a reader never sees half
  a file. Served only as an attachment, with `nosniff` and a sandboxing CSP.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import secrets
import unicodedata
import warnings
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import filetype
from flask import Response, abort, current_app
from flask_babel import gettext as _
from PIL import Image, ImageOps
from pypdf import PdfReader
from pypdf.generic import (
    ArrayObject,
    DictionaryObject,
    IndirectObject,
    NameObject,
    PdfObject,
)

from portal.config import INSTANCE_DIR
from portal.disputes.storage_types import StoredEvidence
from portal.errors import DomainError
from portal.extensions import talisman
from portal.responses import attachment_disposition

__all__ = [
    "EVIDENCE_CSP",
    "EvidenceRefused",
    "StoredEvidence",
    "accept_uploads",
    "discard",
    "evidence_response",
    "serves_evidence",
]

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_FILES = 5
# A 48-megapixel phone photo is 8000 × 6000; decoding costs about 4 bytes a pixel.
DEFAULT_MAX_PIXELS = 64_000_000
MAX_NAME_LENGTH = 200

PDF = "application/pdf"
PNG = "image/png"
JPEG = "image/jpeg"
EXTENSIONS = {PDF: (".pdf",), PNG: (".png",), JPEG: (".jpg", ".jpeg")}

# PDF names that make a document do something when opened, clicked or submitted (ISO
# 32000-2 §12.6 actions, §12.7 forms, §7.11.4 embedded files, §13.7 rich media). As
# keys of a dictionary, or as the /S (action type) or /Subtype of one.
ACTIVE_KEYS = frozenset(
    {
        "/JavaScript",
        "/JS",
        "/OpenAction",
        "/AA",
        "/Launch",
        "/EmbeddedFiles",
        "/EmbeddedFile",
        "/EF",
        "/RichMedia",
        "/RichMediaContent",
        "/XFA",
        "/SubmitForm",
        "/ImportData",
    }
)
ACTIVE_TYPES = frozenset(
    {
        "/JavaScript",
        "/Launch",
        "/SubmitForm",
        "/ImportData",
        "/ResetForm",
        "/GoToE",
        "/GoToR",
        "/Rendition",
        "/Movie",
        "/Sound",
        "/RichMedia",
        "/RichMediaExecute",
        "/FileAttachment",
        "/EmbeddedFile",
        "/Screen",
    }
)
# The same names in the raw bytes, `#xx`-escapes decoded: catches objects that no
# cross-reference table lists (a reader that repairs the file would still find them).
# Stream data is left out: compressed bytes hold "/JS" or "/AA" by chance (one in 16
# million positions); pypdf's walk below reads what object streams hold.
_RAW_NAME = re.compile(rb"/([A-Za-z#0-9]+)")
_STREAM_DATA = re.compile(rb"\bstream\r?\n.*?\bendstream\b", re.S)
# Markup a browser's sniffer, or an HTML reader, would take for a web page.
_MARKUP = re.compile(rb"<\s*(?:!doctype\s+html|html|head|body|script|svg|iframe)\b", re.I)
_STORAGE_NAME = re.compile(r"[A-Za-z0-9_-]{16,64}")
_UNSAFE_NAME_CHARACTERS = ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn")

# Why an upload was refused (EvidenceRefused.reason); each has its message in `_refuse`.
REASONS = (
    "too_many",
    "too_large",
    "empty",
    "type",
    "polyglot",
    "active",
    "encrypted",
    "unreadable",
    "image_too_large",
)


class EvidenceRefused(DomainError):
    """An upload was refused; `message` names the file and says why, `reason` is one of
    REASONS. Nothing was written."""

    def __init__(self, message: str, *, reason: str, filename: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.filename = filename


class Upload(Protocol):
    """What a browser's file part offers (werkzeug's FileStorage)."""

    filename: str | None
    stream: Any


@dataclass(frozen=True, slots=True)
class _Checked:
    """A file that passed every check, ready to be written."""

    data: bytes
    original_name: str
    content_type: str


# --- settings ------------------------------------------------------------------------
def max_bytes() -> int:
    return int(current_app.config.get("EVIDENCE_MAX_BYTES", DEFAULT_MAX_BYTES))


def max_files() -> int:
    return int(current_app.config.get("EVIDENCE_MAX_FILES", DEFAULT_MAX_FILES))


def max_pixels() -> int:
    return int(current_app.config.get("EVIDENCE_MAX_PIXELS", DEFAULT_MAX_PIXELS))


def upload_dir() -> Path:
    """UPLOAD_DIR (default `instance/uploads`), created when missing (mode 0700)."""
    path = Path(current_app.config.get("UPLOAD_DIR") or INSTANCE_DIR / "uploads")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def _megabytes(size: int) -> str:
    from flask_babel import format_decimal

    return str(format_decimal(round(size / (1024 * 1024), 1)))


# --- the checks ----------------------------------------------------------------------
def sanitize_name(filename: str | None) -> str:
    """The name a customer gave a file, safe to show and to send back in a header:
    the last path component, NFC, without control or format characters (bidi
    overrides), spaces collapsed, at most 200 characters (the extension kept)."""
    name = unicodedata.normalize("NFC", filename or "")
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(c for c in name if unicodedata.category(c) not in _UNSAFE_NAME_CHARACTERS)
    name = " ".join(name.split()).strip(" .")
    if len(name) > MAX_NAME_LENGTH:
        stem, dot, extension = name.rpartition(".")
        if dot and 0 < len(extension) <= 10:
            name = stem[: MAX_NAME_LENGTH - len(extension) - 1].rstrip() + "." + extension
        else:
            name = name[:MAX_NAME_LENGTH]
    return name or "evidence"


def _with_extension(name: str, content_type: str) -> str:
    """The name with an extension that matches the content ("scan.pdf" that is a PNG is
    stored as "scan.png"), so that the download opens in the right program."""
    if name.lower().endswith(EXTENSIONS[content_type]):
        return name
    stem, dot, extension = name.rpartition(".")
    if dot and stem and len(extension) <= 10:
        name = stem
    wanted = EXTENSIONS[content_type][0]
    return name[: MAX_NAME_LENGTH - len(wanted)] + wanted


def _read_limited(upload: Upload, limit: int) -> bytes:
    """At most `limit + 1` bytes: enough to tell that a file is over the limit without
    reading a bigger one into memory (UPLOAD_MAX_CONTENT_LENGTH bounds the request anyway)."""
    stream = upload.stream
    if hasattr(stream, "seek"):
        stream.seek(0)
    data: bytes = stream.read(limit + 1)
    return data


def _refuse(reason: str, name: str) -> EvidenceRefused:
    messages: dict[str, Callable[[], str]] = {
        "too_large": lambda: _(
            "“%(name)s” is larger than %(size)s MB. Please send a smaller file.",
            name=name,
            size=_megabytes(max_bytes()),
        ),
        "empty": lambda: _("“%(name)s” is empty. Please choose the file again.", name=name),
        "type": lambda: _(
            "“%(name)s” is not a PDF, PNG or JPEG file. Please send your evidence as a PDF "
            "document or as a photo (PNG or JPEG).",
            name=name,
        ),
        "polyglot": lambda: _(
            "“%(name)s” holds more than one kind of file (for example a zip archive or a web "
            "page inside a PDF or an image). Please send a plain PDF, PNG or JPEG file.",
            name=name,
        ),
        "active": lambda: _(
            "“%(name)s” is a PDF with scripts, actions, forms or attached files, which we "
            "cannot accept. Please print it to a new PDF, or send a photo of it.",
            name=name,
        ),
        "encrypted": lambda: _(
            "“%(name)s” is a password-protected PDF. Please send it without a password.",
            name=name,
        ),
        "unreadable": lambda: _(
            "“%(name)s” could not be read: the file seems damaged. Please save it again "
            "and send the new file.",
            name=name,
        ),
        "image_too_large": lambda: _(
            "“%(name)s” is an image with too many pixels. Please send a smaller photo.",
            name=name,
        ),
    }
    return EvidenceRefused(messages[reason](), reason=reason, filename=name)


def _is_zip(data: bytes) -> bool:
    try:
        return zipfile.is_zipfile(io.BytesIO(data))
    except Exception:  # a reader error means "no zip directory found"
        return False


def _check_pdf(data: bytes, name: str) -> None:
    """Refuse a PDF that is more than a PDF, is encrypted, or could act when opened."""
    if not data.startswith(b"%PDF-"):
        raise _refuse("type", name)
    end = data.rfind(b"%%EOF")
    if end < 0:
        raise _refuse("unreadable", name)
    if data[end + len(b"%%EOF") :].strip(b"\r\n\t \x00\x0c"):
        raise _refuse("polyglot", name)
    # Outside stream data: compressed bytes spell "<svg" by chance (a few times a gigabyte).
    structure = _STREAM_DATA.sub(b"stream endstream", data)
    if _MARKUP.search(structure):
        raise _refuse("polyglot", name)
    if _raw_names(structure) & (ACTIVE_KEYS | ACTIVE_TYPES):
        raise _refuse("active", name)
    try:
        with warnings.catch_warnings():
            # pypdf warns about small defects it repairs (a common case in scans);
            # they are not a reason to refuse, and tests turn warnings into errors.
            warnings.simplefilter("ignore")
            reader = PdfReader(io.BytesIO(data), strict=False)
            if reader.is_encrypted:
                raise _refuse("encrypted", name)
            active = _has_active_content(reader)
            if len(reader.pages) < 1:
                raise _refuse("unreadable", name)
    except EvidenceRefused:
        raise
    except Exception:  # pypdf raises many kinds for a broken file
        raise _refuse("unreadable", name) from None
    if active:
        raise _refuse("active", name)


def _raw_names(data: bytes) -> set[str]:
    names = set()
    for match in _RAW_NAME.finditer(data):
        token = match.group(1)
        if b"#" in token:
            token = re.sub(rb"#([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), token)
        names.add("/" + token.decode("latin-1"))
    return names


def _has_active_content(reader: PdfReader) -> bool:
    """Any dictionary in the document (every object the cross-reference tables and
    object streams list, and the trailer) with an active key or action type."""
    roots: list[Any] = [reader.trailer]
    for generation, objects in reader.xref.items():
        roots.extend(IndirectObject(number, generation, reader) for number in objects)
    roots.extend(IndirectObject(number, 0, reader) for number in reader.xref_objStm)
    seen: set[tuple[int, int]] = set()
    stack: list[Any] = list(roots)
    visited = 0
    while stack:
        item = stack.pop()
        visited += 1
        if visited > 1_000_000:
            raise ValueError("too many objects")
        if isinstance(item, IndirectObject):
            key = (item.idnum, item.generation)
            if key in seen:
                continue
            seen.add(key)
            item = item.get_object()
        if isinstance(item, DictionaryObject):  # also a stream's dictionary
            for dict_key, value in item.items():
                if str(dict_key) in ACTIVE_KEYS:
                    return True
                if dict_key in ("/S", "/Subtype") and _is_name(value, ACTIVE_TYPES):
                    return True
                stack.append(value)
        elif isinstance(item, ArrayObject):
            stack.extend(item)
    return False


def _is_name(value: PdfObject | Any, names: frozenset[str]) -> bool:
    return isinstance(value, NameObject) and str(value) in names


def _reencode_image(data: bytes, content_type: str, name: str) -> bytes:
    """The image decoded and saved again: pixels only, upright (EXIF orientation applied
    before EXIF is dropped), nothing else from the upload."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                expected = ("PNG",) if content_type == PNG else ("JPEG", "MPO")
                if image.format not in expected:
                    raise _refuse("type", name)
                width, height = image.size
                if width * height > max_pixels():
                    raise _refuse("image_too_large", name)
                image.load()
                upright = ImageOps.exif_transpose(image) or image
                return _save_image(upright, content_type)
    except EvidenceRefused:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _refuse("image_too_large", name) from None
    except Exception:  # Pillow raises many kinds for a broken image
        raise _refuse("unreadable", name) from None


def _save_image(image: Image.Image, content_type: str) -> bytes:
    """Save the pixels into a new image object: Pillow carries `info` (comments, ICC
    profile, EXIF, text chunks) from a decoded image into what it saves."""
    if content_type == JPEG:
        wanted = image.mode if image.mode in ("RGB", "L") else "RGB"
    elif image.mode == "P":
        wanted = "RGBA" if "transparency" in image.info else "RGB"
    else:
        wanted = image.mode if image.mode in ("1", "L", "LA", "RGB", "RGBA") else "RGBA"
    pixels = image if image.mode == wanted else image.convert(wanted)
    fresh = Image.frombytes(wanted, pixels.size, pixels.tobytes())
    out = io.BytesIO()
    if content_type == JPEG:
        fresh.save(out, format="JPEG", quality=90, optimize=True)
    else:
        fresh.save(out, format="PNG")
    return out.getvalue()


def check_upload(upload: Upload) -> _Checked:
    """One file checked and cleaned (images re-encoded); raises EvidenceRefused."""
    name = sanitize_name(upload.filename)
    data = _read_limited(upload, max_bytes())
    if len(data) > max_bytes():
        raise _refuse("too_large", name)
    if not data:
        raise _refuse("empty", name)
    kind = filetype.guess(data)
    content_type = kind.mime if kind is not None else None
    if content_type not in (PDF, PNG, JPEG):
        raise _refuse("type", name)
    if _is_zip(data):
        raise _refuse("polyglot", name)
    if content_type == PDF:
        _check_pdf(data, name)
        cleaned = data
    else:
        cleaned = _reencode_image(data, content_type, name)
    return _Checked(cleaned, _with_extension(name, content_type), content_type)


def chosen_files(files: Iterable[Upload]) -> list[Upload]:
    """The parts that carry a file: a form sent with no file chosen still has one part
    with an empty name and no bytes, which is no upload at all."""
    chosen = []
    for upload in files:
        if upload is None:
            continue
        if not upload.filename:
            stream = upload.stream
            head = stream.read(1) if stream is not None else b""
            if hasattr(stream, "seek"):
                stream.seek(0)
            if not head:
                continue
        chosen.append(upload)
    return chosen


# --- writing and removing ------------------------------------------------------------
def accept_uploads(files: Sequence[Upload]) -> list[StoredEvidence]:
    """Check every file, then store them all; `[]` when no file was chosen.

    Raises EvidenceRefused (message names the file) for a sixth file, one over
    EVIDENCE_MAX_BYTES, an empty one, anything but PDF/PNG/JPEG by content, a
    polyglot, or a PDF that is encrypted or carries active content: then NOTHING is
    written. On an OSError while writing, what was written is removed and the error
    raised. The caller records the result in the database, and calls `discard` if that
    transaction fails.
    """
    uploads = chosen_files(files)
    limit = max_files()
    if len(uploads) > limit:
        raise EvidenceRefused(
            _(
                "You chose %(count)d files; at most %(max)d can be sent. Please leave out "
                "“%(name)s” and the files after it.",
                count=len(uploads),
                max=limit,
                name=sanitize_name(uploads[limit].filename),
            ),
            reason="too_many",
            filename=sanitize_name(uploads[limit].filename),
        )
    checked = [check_upload(upload) for upload in uploads]
    directory = upload_dir()
    stored: list[StoredEvidence] = []
    try:
        for item in checked:
            stored.append(_write(directory, item))
    except BaseException:
        discard(stored)
        raise
    return stored


def _write(directory: Path, item: _Checked) -> StoredEvidence:
    """Write to a temporary name in the same directory, fsync, rename: atomic on POSIX
    file systems (os.replace), so another server never reads half a file."""
    storage_name = secrets.token_urlsafe(24)
    final = directory / storage_name
    temporary = directory / f".{storage_name}.part"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(item.data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, final)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return StoredEvidence(
        storage_name=storage_name,
        original_name=item.original_name,
        content_type=item.content_type,
        size_bytes=len(item.data),
        sha256=hashlib.sha256(item.data).hexdigest(),
    )


def discard(stored: Iterable[StoredEvidence]) -> None:
    """Remove files `accept_uploads` wrote (the database transaction that was to record
    them failed). Missing files are fine; never raises for one."""
    directory = upload_dir()
    for item in stored:
        if _STORAGE_NAME.fullmatch(item.storage_name):
            try:
                (directory / item.storage_name).unlink(missing_ok=True)
            except OSError:
                current_app.logger.warning("could not remove evidence %s", item.storage_name)


# --- serving -------------------------------------------------------------------------
# A downloaded file is never a page of ours: no script, no plugin, no same origin, even
# if a browser ignored the attachment disposition (CSP Level 3 `sandbox`).
EVIDENCE_CSP: dict[str, str] = {"default-src": "'none'", "sandbox": ""}

View = TypeVar("View", bound=Callable[..., Any])


def serves_evidence(view: View) -> View:
    """Decorate a view that returns `evidence_response`: Talisman writes every
    response's CSP after the view, so the sandboxing policy must be its per-view option."""
    decorated: View = talisman(
        content_security_policy=EVIDENCE_CSP, content_security_policy_nonce_in=[]
    )(view)
    return decorated


class _EvidenceFile(Protocol):
    storage_name: str
    original_name: str
    content_type: str


def evidence_response(file: _EvidenceFile) -> Response:
    """The stored file as a download: `Content-Disposition: attachment` with the UTF-8
    name (RFC 6266), its stored type, `nosniff`, a sandboxing CSP, `private, no-store`.
    404 if the stored name is not one we make or the file is gone. The caller has
    checked that the file is the requester's (or that staff ask)."""
    if not _STORAGE_NAME.fullmatch(file.storage_name or ""):
        abort(404)
    path = upload_dir() / file.storage_name
    if not path.is_file():
        current_app.logger.warning("evidence file missing: %s", file.storage_name)
        abort(404)
    # Read whole (≤ EVIDENCE_MAX_BYTES): no open file left behind by a dropped download.
    response = Response(path.read_bytes(), mimetype=file.content_type)
    response.headers["Content-Disposition"] = attachment_disposition(file.original_name)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Cache-Control"] = "private, no-store"
    return response
