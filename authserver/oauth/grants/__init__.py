"""One module per grant: Authlib grant subclasses set class constants and fill in hooks."""
