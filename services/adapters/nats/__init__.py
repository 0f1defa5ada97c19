"""NATS and JetStream: ingress, relay, router, live delivery, files, the producer client."""
