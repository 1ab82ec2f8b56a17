"""FHS peering (DESIGN §2-§3, STYLE #9): pinned peer keys, signed messages, the FHS-FHS API server, a narrow
client, and the replication manager that pushes and pulls federation events."""
