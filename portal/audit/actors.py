"""Who did something, as written in an audit row's `actor` column."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did something: a kind and, for most kinds, which one.

    Kinds: "customer" (id), "staff" (staff member id), "system" (the portal itself: the
    worker, a policy; optionally which part), "stripe" (its webhooks), "import" (the
    front end: "cli", "demo"), "cli" (an operator at the `portal` command), "developer"
    (development-only tools). Every service that changes something takes one; nobody
    builds the string by hand. `str(actor)` is what the audit row's `actor` column
    stores and the audit log filters on: "customer:42", "staff:7", "system",
    "import:cli".
    """

    kind: str
    name: str = ""

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}" if self.name else self.kind

    @classmethod
    def customer(cls, customer: object) -> Actor:
        """A customer acting through the portal (a `Customer`, or its id)."""
        return cls("customer", str(getattr(customer, "id", customer)))

    @classmethod
    def system(cls) -> Actor:
        """The portal itself: the jobs runner, Stripe's webhooks, a policy."""
        return cls("system")

    @classmethod
    def stripe(cls) -> Actor:
        """Stripe, through its webhooks (a refund made in its dashboard, say)."""
        return cls("stripe")

    @classmethod
    def cli(cls) -> Actor:
        """An operator at the `portal` command."""
        return cls("cli")

    @classmethod
    def staff(cls, member: object) -> Actor:
        """A staff member (a `StaffMember`, or anything with an `id`)."""
        return cls("staff", str(getattr(member, "id", member)))

    @classmethod
    def importer(cls, via: str) -> Actor:
        """An import run through `via` (the CLI, later the REST API)."""
        return cls("import", via)
