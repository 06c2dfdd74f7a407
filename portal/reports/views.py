"""The reports under /staff/reports: each a chart, a table and a CSV export (specialists)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from flask import Blueprint, Response, current_app, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import ngettext

from portal.i18n import creditor_zone, date_filter, money_filter
from portal.money import Money
from portal.promises.models import PromiseStatus
from portal.reports import charts, exports
from portal.reports import plans as plan_reports
from portal.reports.forms import AgingForm, PeriodForm
from portal.reports.queries import (
    BUCKET_KEYS,
    Period,
    aging,
    collections_per_day,
    currencies_in_use,
    effectiveness,
    payments_by_channel,
    promises_by_outcome,
)
from portal.staff.auth import staff_required
from portal.staff.models import StaffRole

bp = Blueprint("reports", __name__, url_prefix="/staff/reports")

# The customers listed on the aging page; the CSV export lists every one.
PAGE_CUSTOMERS = 50


def _today() -> date:
    return datetime.now(creditor_zone()).date()


def _currencies() -> list[str]:
    return currencies_in_use() or [current_app.config["DEFAULT_CURRENCY"]]


def _default_currency(codes: list[str]) -> str:
    default = current_app.config["DEFAULT_CURRENCY"]
    return default if default in codes else codes[0]


def _aging_form() -> AgingForm:
    """The filters from the query string; today and the default currency when absent."""
    codes = _currencies()
    form = AgingForm(
        formdata=request.args or None, as_of=_today(), currency=_default_currency(codes)
    )
    form.set_currencies(codes)
    return form


def _period_form() -> PeriodForm:
    codes = _currencies()
    today = _today()
    form = PeriodForm(
        formdata=request.args or None,
        start=today - timedelta(days=29),
        end=today,
        currency=_default_currency(codes),
    )
    form.set_currencies(codes)
    return form


def _csv(body: str, name: str) -> Response:
    return Response(
        body,
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


BUCKET_LABELS = {
    "current": lambda: _("Current"),
    "1-30": lambda: _("1–30 days"),
    "31-60": lambda: _("31–60 days"),
    "61-90": lambda: _("61–90 days"),
    "91-120": lambda: _("91–120 days"),
    "120+": lambda: _("Over 120 days"),
}


def bucket_labels() -> dict[str, str]:
    return {key: BUCKET_LABELS[key]() for key in BUCKET_KEYS}


@bp.get("/")
@staff_required(StaffRole.SPECIALIST)
def index() -> ResponseReturnValue:
    return redirect(url_for("reports.aging_report"))


@bp.get("/aging")
@staff_required(StaffRole.SPECIALIST)
def aging_report() -> ResponseReturnValue:
    form = _aging_form()
    if not form.validate():
        return render_template("reports/aging.html", form=form, report=None), 400
    report = aging(form.as_of.data, currency=form.currency.data, customer_limit=PAGE_CUSTOMERS)
    row = report.total_for(form.currency.data)
    labels = bucket_labels()
    chart = charts.horizontal_bars(
        "aging-chart",
        [
            charts.Bar(
                labels[key],
                row.buckets[key].minor,
                _money(row.buckets[key]),
                charts.PATTERNS[i % len(charts.PATTERNS)],
            )
            for i, key in enumerate(BUCKET_KEYS)
        ],
    )
    return render_template(
        "reports/aging.html",
        form=form,
        report=report,
        row=row,
        chart=chart,
        labels=labels,
        page_customers=PAGE_CUSTOMERS,
    )


@bp.get("/aging.csv")
@staff_required(StaffRole.SPECIALIST)
def aging_csv() -> ResponseReturnValue:
    form = _aging_form()
    if not form.validate():
        return render_template("reports/aging.html", form=form, report=None), 400
    report = aging(form.as_of.data, currency=form.currency.data, customer_limit=None)
    return _csv(
        exports.aging_customers_csv(report),
        f"aging-{form.as_of.data.isoformat()}-{form.currency.data}.csv",
    )


def _effectiveness_context(form: PeriodForm) -> dict[str, Any]:
    period = Period(form.start.data, form.end.data)
    result = effectiveness(period, form.currency.data)
    terms = [
        ("beginning", _("Receivables at the start"), result.beginning),
        ("sales", _("Credit sales in the period"), result.sales),
        ("ending", _("Receivables at the end"), result.ending),
        ("ending_current", _("Of which not yet past due"), result.ending_current),
    ]
    chart = charts.horizontal_bars(
        "effectiveness-chart",
        [
            charts.Bar(label, amount.minor, _money(amount), charts.PATTERNS[i])
            for i, (_key, label, amount) in enumerate(terms)
        ],
    )
    return {"result": result, "terms": terms, "chart": chart, "period": period}


@bp.get("/dso-cei")
@staff_required(StaffRole.SPECIALIST)
def effectiveness_report() -> ResponseReturnValue:
    form = _period_form()
    if not form.validate():
        return render_template("reports/effectiveness.html", form=form, result=None), 400
    return render_template("reports/effectiveness.html", form=form, **_effectiveness_context(form))


@bp.get("/dso-cei.csv")
@staff_required(StaffRole.SPECIALIST)
def effectiveness_csv() -> ResponseReturnValue:
    form = _period_form()
    if not form.validate():
        return render_template("reports/effectiveness.html", form=form, result=None), 400
    result = effectiveness(Period(form.start.data, form.end.data), form.currency.data)
    body = exports.to_csv(
        [
            "start",
            "end",
            "days",
            "currency",
            "beginning_receivables",
            "credit_sales",
            "ending_receivables",
            "ending_current_receivables",
            "dso_days",
            "cei_percent",
        ],
        [
            [
                result.period.start.isoformat(),
                result.period.end.isoformat(),
                result.period.days,
                result.currency,
                result.beginning.to_decimal(),
                result.sales.to_decimal(),
                result.ending.to_decimal(),
                result.ending_current.to_decimal(),
                "" if result.dso is None else result.dso,
                "" if result.cei is None else result.cei,
            ]
        ],
    )
    return _csv(body, f"dso-cei-{result.period.start}-{result.period.end}-{result.currency}.csv")


@bp.get("/collections")
@staff_required(StaffRole.SPECIALIST)
def collections_report() -> ResponseReturnValue:
    form = _period_form()
    if not form.validate():
        return render_template("reports/collections.html", form=form, days=None), 400
    period = Period(form.start.data, form.end.data)
    days = collections_per_day(period, form.currency.data)
    channels = payments_by_channel(period, form.currency.data)
    channel_labels = {"card": _("Card"), "offline": _("Offline (bank transfer, cheque)")}
    promises = promises_by_outcome(period, form.currency.data)
    every = max(1, len(days) // 8)
    return render_template(
        "reports/collections.html",
        form=form,
        days=days,
        channels=channels,
        channel_labels=channel_labels,
        total=sum((d.net.minor for d in days), 0),
        days_chart=charts.columns(
            "collections-chart",
            [charts.Bar(_short_date(d.day), d.net.minor, _money(d.net)) for d in days],
            every=every,
        ),
        promises=promises,
        promise_labels={p.status: PromiseStatus(p.status).label for p in promises},
        promises_chart=charts.horizontal_bars(
            "promises-chart",
            [
                charts.Bar(
                    PromiseStatus(p.status).label,
                    p.count,
                    ngettext("%(num)d promise", "%(num)d promises", p.count),
                    charts.PATTERNS[i],
                )
                for i, p in enumerate(promises)
            ],
        ),
        channel_chart=charts.horizontal_bars(
            "channel-chart",
            [
                charts.Bar(
                    channel_labels[c.channel],
                    c.amount.minor,
                    _money(c.amount),
                    "hatch" if c.channel == "card" else "dots",
                )
                for c in channels
            ],
        ),
    )


@bp.get("/collections.csv")
@staff_required(StaffRole.SPECIALIST)
def collections_csv() -> ResponseReturnValue:
    form = _period_form()
    if not form.validate():
        return render_template("reports/collections.html", form=form, days=None), 400
    period = Period(form.start.data, form.end.data)
    days = collections_per_day(period, form.currency.data)
    body = exports.to_csv(
        ["day", "currency", "payments", "received", "refunded", "net"],
        [
            [
                d.day.isoformat(),
                form.currency.data,
                d.count,
                d.received.to_decimal(),
                d.refunded.to_decimal(),
                d.net.to_decimal(),
            ]
            for d in days
        ],
    )
    return _csv(body, f"collections-{period.start}-{period.end}-{form.currency.data}.csv")


@bp.get("/channels.csv")
@staff_required(StaffRole.SPECIALIST)
def channels_csv() -> ResponseReturnValue:
    form = _period_form()
    if not form.validate():
        return render_template("reports/collections.html", form=form, days=None), 400
    period = Period(form.start.data, form.end.data)
    body = exports.to_csv(
        ["start", "end", "currency", "channel", "payments", "amount"],
        [
            [
                period.start.isoformat(),
                period.end.isoformat(),
                form.currency.data,
                c.channel,
                c.count,
                c.amount.to_decimal(),
            ]
            for c in payments_by_channel(period, form.currency.data)
        ],
    )
    return _csv(body, f"channels-{period.start}-{period.end}-{form.currency.data}.csv")


@bp.get("/promises.csv")
@staff_required(StaffRole.SPECIALIST)
def promises_csv() -> ResponseReturnValue:
    form = _period_form()
    if not form.validate():
        return render_template("reports/collections.html", form=form, days=None), 400
    period = Period(form.start.data, form.end.data)
    body = exports.to_csv(
        ["start", "end", "currency", "status", "promises", "promised", "paid"],
        [
            [
                period.start.isoformat(),
                period.end.isoformat(),
                form.currency.data,
                p.status,
                p.count,
                p.amount.to_decimal(),
                p.paid.to_decimal(),
            ]
            for p in promises_by_outcome(period, form.currency.data)
        ],
    )
    return _csv(body, f"promises-{period.start}-{period.end}-{form.currency.data}.csv")


@bp.get("/plans")
@staff_required(StaffRole.SPECIALIST)
def plans_report() -> ResponseReturnValue:
    form = _period_form()
    if not form.validate():
        return render_template("reports/plans.html", form=form, rows=None), 400
    rows = plan_reports.plans_by_segment(Period(form.start.data, form.end.data), form.currency.data)
    total = plan_reports.totals(rows, form.currency.data)
    return render_template(
        "reports/plans.html",
        form=form,
        rows=rows,
        total=total,
        kept_chart=charts.horizontal_bars(
            "plans-chart",
            [
                charts.Bar(
                    _("Kept"), total.kept, ngettext("%(num)d plan", "%(num)d plans", total.kept)
                ),
                charts.Bar(
                    _("Broken"),
                    total.broken,
                    ngettext("%(num)d plan", "%(num)d plans", total.broken),
                    "hatch",
                ),
            ],
        ),
    )


@bp.get("/plans.csv")
@staff_required(StaffRole.SPECIALIST)
def plans_csv() -> ResponseReturnValue:
    form = _period_form()
    if not form.validate():
        return render_template("reports/plans.html", form=form, rows=None), 400
    period = Period(form.start.data, form.end.data)
    rows = plan_reports.plans_by_segment(period, form.currency.data)
    body = exports.to_csv(
        [
            "start",
            "end",
            "currency",
            "segment",
            "active_plans",
            "under_plans",
            "installments_due",
            "paid_on_time",
            "kept",
            "broken",
        ],
        [
            [
                period.start.isoformat(),
                period.end.isoformat(),
                form.currency.data,
                r.segment,
                r.active,
                r.under_plans.to_decimal(),
                r.installments_due,
                r.paid_on_time,
                r.kept,
                r.broken,
            ]
            for r in rows
        ],
    )
    return _csv(body, f"plans-{period.start}-{period.end}-{form.currency.data}.csv")


def _money(amount: Money) -> str:
    return money_filter(amount)


def _short_date(day: date) -> str:
    return date_filter(day, "short")
