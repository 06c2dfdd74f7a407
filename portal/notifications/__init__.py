"""Customer email: written to the outbox in the business transaction, delivered later."""
