"""Payment plans: policy limits per segment, schedules, plans and their installments."""
