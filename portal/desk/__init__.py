"""The specialist's desk under /staff/: find a customer, read their whole history,
record calls and promises, send or revoke links, refund, read the outbox."""
