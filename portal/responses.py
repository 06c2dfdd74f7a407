from __future__ import annotations

from urllib.parse import quote

from flask import Response


def attachment_disposition(filename: str) -> str:
    """`Content-Disposition: attachment` for a name that may hold any character (ERP
    numbers, a customer's file name): an ASCII fallback and the UTF-8 name (RFC 6266,
    RFC 8187), as Werkzeug's `send_file` sends them."""
    fallback = filename.encode("ascii", "replace").decode()
    for unsafe in ('"', "\\", "/", "\r", "\n"):
        fallback = fallback.replace(unsafe, "_")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def pdf_response(pdf: bytes, filename: str) -> Response:
    """A PDF download. `filename` carries ERP data (invoice and account numbers), so it is
    sent with an ASCII fallback and the UTF-8 name (`attachment_disposition`)."""
    response = Response(pdf, mimetype="application/pdf")
    response.headers["Content-Disposition"] = attachment_disposition(filename)
    return response
