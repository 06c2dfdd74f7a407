"""Payments received and their allocation to invoices."""
