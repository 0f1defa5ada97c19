"""The turnlog model: aggregates, their events and their rules. Pure: no I/O, no clock."""
