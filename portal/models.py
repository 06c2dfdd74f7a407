"""Import every model so that Alembic and `db.create_all` see the whole schema."""

from portal.access.models import AccessLink, LinkRequest, PrincipalSession
from portal.audit.models import AuditEvent
from portal.customers.models import Customer
from portal.desk.models import SEARCH_INDEXES
from portal.disputes.models import Dispute, DisputeFile, DisputeLine, DisputeMessage
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
from portal.plans.models import (
    InstallmentAttempt,
    PaymentPlan,
    PlanInstallment,
    PlanInvoice,
    PlanPolicyVersion,
)
from portal.promises.models import CustomerNote, Promise, PromiseInvoice
from portal.staff.models import StaffMember

__all__ = [
    "SEARCH_INDEXES",
    "AccessLink",
    "AuditEvent",
    "CardFailure",
    "Checkout",
    "CheckoutInvoice",
    "CreditNote",
    "Customer",
    "CustomerNote",
    "Dispute",
    "DisputeFile",
    "DisputeLine",
    "DisputeMessage",
    "EmailOptOut",
    "InstallmentAttempt",
    "Invoice",
    "InvoiceLine",
    "JobRun",
    "JobSchedule",
    "LinkRequest",
    "OutboxMessage",
    "Payment",
    "PaymentAccount",
    "PaymentAllocation",
    "PaymentPlan",
    "PlanInstallment",
    "PlanInvoice",
    "PlanPolicyVersion",
    "PrincipalSession",
    "Promise",
    "PromiseInvoice",
    "Refund",
    "RefundAllocation",
    "ReminderStep",
    "SavedCard",
    "StaffMember",
    "WebhookEvent",
]
