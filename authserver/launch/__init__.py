"""EHR launches: the opaque ``launch`` id an EHR hands an app, and the context behind it."""
