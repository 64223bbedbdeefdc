"""One module per grant (Authlib subclasses: constants and storage hooks), and the SMART
extensions registered beside them."""
