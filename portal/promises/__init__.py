"""Notes of calls and promises to pay: what a specialist or the customer agreed, and
whether the money came by the date."""
