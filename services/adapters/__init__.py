"""The ports' implementations, by technology."""
