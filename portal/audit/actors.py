"""Who did something, as written in an audit row's `actor` column."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Actor:
    """A kind of actor ("customer", "staff", "system", "cli", "import") and which one.

    `str(actor)` is what the audit row stores: "import:cli", "customer:42", "system".
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
    def staff(cls, member: object) -> Actor:
        """A staff member (a `StaffMember`, or anything with an `id`)."""
        return cls("staff", str(getattr(member, "id", member)))

    @classmethod
    def importer(cls, via: str) -> Actor:
        """An import run through `via` (the CLI, later the REST API)."""
        return cls("import", via)
