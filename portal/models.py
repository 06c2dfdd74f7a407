"""Import every model so that Alembic and `db.create_all` see the whole schema."""

from portal.access.models import AccessLink, LinkRequest, PrincipalSession
from portal.audit.models import AuditEvent
from portal.customers.models import Customer
from portal.invoices.models import CreditNote, Invoice, InvoiceLine
from portal.jobs.models import JobRun, JobSchedule
from portal.notifications.models import EmailOptOut, OutboxMessage, ReminderStep
from portal.payments.models import (
    CardFailure,
    Checkout,
    CheckoutInvoice,
    Payment,
    PaymentAccount,
    PaymentAllocation,
    Refund,
    RefundAllocation,
    SavedCard,
    WebhookEvent,
)
from portal.staff.models import StaffMember

__all__ = [
    "AccessLink",
    "AuditEvent",
    "CardFailure",
    "Checkout",
    "CheckoutInvoice",
    "CreditNote",
    "Customer",
    "EmailOptOut",
    "Invoice",
    "InvoiceLine",
    "JobRun",
    "JobSchedule",
    "LinkRequest",
    "OutboxMessage",
    "Payment",
    "PaymentAccount",
    "PaymentAllocation",
    "PrincipalSession",
    "Refund",
    "RefundAllocation",
    "ReminderStep",
    "SavedCard",
    "StaffMember",
    "WebhookEvent",
]
