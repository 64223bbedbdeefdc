"""Tenants (clinics): their rows, their URLs and resolution of the tenant from the request path."""
