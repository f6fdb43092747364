"""System health: the check, its market-hours-aware schedule and the `system_health` record."""
