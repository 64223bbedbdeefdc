"""Registered apps (OAuth clients) and resource servers, tenant-owned."""
