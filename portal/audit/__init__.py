"""The append-only audit log of every access, staff action and money movement."""
