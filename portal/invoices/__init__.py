"""Invoices, their line items and credit notes; balances are derived from records."""
