"""Customers: the accounts whose receivables the portal collects."""
