"""NATS JetStream: inbound messages, the event relay, live output, the producer client."""
