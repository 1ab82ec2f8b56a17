"""Per-federation monitoring: counters from this FHS's audit log, collated across participating FHSs."""
