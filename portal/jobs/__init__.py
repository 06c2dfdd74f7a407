"""The jobs runner: every timed action (email delivery, reminders, later autopay) runs here."""
