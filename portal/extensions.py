"""Flask extensions, created unbound here and bound in `create_app`."""

from __future__ import annotations

from flask_babel import Babel
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

from portal.security import ViewSecurity


class PortalCSRFProtect(CSRFProtect):
    """Flask-WTF's CSRF check, with a Referer it cannot parse refused as a bad referrer.

    On HTTPS Flask-WTF compares the Referer's origin with the Host's, through
    `urlparse(…).port`, which raises ValueError on a port that is not a number
    ("https://portal.example:abc/"): a 500 for any client that sends one. Such a
    request is refused like any other cross-origin one (400, nothing written).
    """

    def protect(self, apply_exemptions: bool = False) -> None:
        try:
            super().protect(apply_exemptions)
        except ValueError:
            self._error_response("The referrer does not match the host.")


class Base(DeclarativeBase):
    # Named constraints so that Alembic migrations are stable on SQLite and PostgreSQL.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
login_manager = LoginManager()
csrf = PortalCSRFProtect()
babel = Babel()
limiter = Limiter(key_func=get_remote_address, default_limits=[])
talisman = ViewSecurity()  # @talisman(...): a view's own CSP; the headers are security.py's
