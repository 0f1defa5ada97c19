"""Running handlers on the event log: live sessions, turns, delivery, hooks."""
