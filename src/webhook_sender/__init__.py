"""The webhook sender: the outbox projection that turns partners' order events into messages, and the
delivery loop that POSTs them, signed, until they arrive (docs/webhooks.md)."""
