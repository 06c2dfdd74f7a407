"""The indexes the staff customer search needs (`queries.search_customers`).

The search matches a prefix, case-insensitively: `lower(column) LIKE 'abc%'`. A plain
index on the column cannot serve it (the lower() hides the column), so each searched
column has an index on its lower() expression. On PostgreSQL the operator class
`text_pattern_ops` is what lets a btree index answer LIKE 'prefix%' under a database
collation other than C (https://www.postgresql.org/docs/current/indexes-opclass.html);
there the search is an index range scan on 100,000 customers. SQLite could use such an
index for equality only, never for LIKE (and Alembic cannot reflect expression indexes
there), so the indexes are PostgreSQL's only (`ddl_if`): SQLite, for a small creditor,
scans.
"""

from __future__ import annotations

from sqlalchemy import Index, func

from portal.customers.models import Customer
from portal.invoices.models import Invoice

SEARCH_INDEXES = (
    Index(
        "ix_customers_account_prefix",
        func.lower(Customer.account_number).label("account_lower"),
        postgresql_ops={"account_lower": "text_pattern_ops"},
    ).ddl_if(dialect="postgresql"),
    Index(
        "ix_customers_name_prefix",
        func.lower(Customer.name).label("name_lower"),
        postgresql_ops={"name_lower": "text_pattern_ops"},
    ).ddl_if(dialect="postgresql"),
    Index(
        "ix_customers_email_prefix",
        func.lower(Customer.email).label("email_lower"),
        postgresql_ops={"email_lower": "text_pattern_ops"},
    ).ddl_if(dialect="postgresql"),
    Index(
        "ix_invoices_number_prefix",
        func.lower(Invoice.number).label("number_lower"),
        postgresql_ops={"number_lower": "text_pattern_ops"},
    ).ddl_if(dialect="postgresql"),
)
