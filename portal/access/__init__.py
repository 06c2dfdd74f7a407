"""Emailed links: the only way a customer gets into the portal."""
