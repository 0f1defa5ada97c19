"""The application: use cases on ports, with no driver of its own."""
