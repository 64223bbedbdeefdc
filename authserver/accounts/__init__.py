"""Staff and patient accounts per tenant, their roles, passwords and login sessions."""
