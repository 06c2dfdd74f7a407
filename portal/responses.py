from __future__ import annotations

from urllib.parse import quote

from flask import Response


def pdf_response(pdf: bytes, filename: str) -> Response:
    """A PDF download. `filename` carries ERP data (invoice and account numbers), so it is
    sent as Werkzeug's `send_file` does: an ASCII fallback and the UTF-8 name (RFC 6266)."""
    response = Response(pdf, mimetype="application/pdf")
    fallback = filename.encode("ascii", "replace").decode()
    for unsafe in ('"', "\\", "/"):
        fallback = fallback.replace(unsafe, "_")
    response.headers["Content-Disposition"] = (
        f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
    )
    return response
