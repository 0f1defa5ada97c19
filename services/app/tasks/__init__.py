"""Background tasks: submitting, queueing and running them."""
