"""Building a process from settings: the composition root, serving, supervision, logs."""
