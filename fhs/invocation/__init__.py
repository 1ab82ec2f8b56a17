"""Invoking a service through the FHS: authorise with the owner's access policy, then proxy (DESIGN §4)."""
