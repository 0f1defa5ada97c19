"""Everything with I/O: event store, infrastructure, runtime, bus, CLI."""
