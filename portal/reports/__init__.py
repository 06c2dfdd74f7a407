"""Receivables reports for staff: aging, DSO and CEI, collections, payment channels."""
