"""Per-tenant signing keys: generation, encryption at rest, rotation and the JWKS."""
