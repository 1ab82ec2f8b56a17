"""Policy decisions: Cedar discovery and access policies of services (use ``fhs.policy.service``)."""
