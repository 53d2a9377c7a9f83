"""Domain events, the event-bus interface with its in-process bus, and the outbox relay."""
