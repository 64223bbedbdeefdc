"""Authlib's authorization server, made tenant-aware, and everything registered on it."""
