"""Per-tenant audit events, written by services from a fixed vocabulary."""
