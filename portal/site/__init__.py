"""Pages that belong to no account: home, accessibility statement, language choice."""
