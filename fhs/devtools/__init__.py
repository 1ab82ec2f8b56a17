"""Development helpers for the README walkthrough and the demo; not part of a production FHS."""
