"""Change control: agents, versions, pins, change requests, approvals and the audit record."""
