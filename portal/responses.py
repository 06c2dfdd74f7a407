from __future__ import annotations

from flask import Response


def pdf_response(pdf: bytes, filename: str) -> Response:
    """A PDF download; `filename` is built by us from safe parts, never from user input."""
    response = Response(pdf, mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
