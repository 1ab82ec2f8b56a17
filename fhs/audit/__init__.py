"""Append-only audit logs: one per federation, one for the operator."""
