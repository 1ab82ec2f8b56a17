"""Federation instances: membership, attribute definitions and grants (IEEE 2302 administrative domain)."""
