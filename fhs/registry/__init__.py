"""Service registry: ServiceOwners register endpoints with discovery and access policies."""
