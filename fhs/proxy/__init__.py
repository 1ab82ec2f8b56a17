"""The FHS's API-gateway proxy: SSRF guard (``ssrf``) and request forwarding (``service``), DESIGN §4."""
