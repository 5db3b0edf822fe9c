"""A user module whose own import fails (the error text must reach the user)."""

import nonexistent_dep  # noqa: F401

app = None
