"""Read models built from the event log: how each event changes a view."""
