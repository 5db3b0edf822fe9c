"""A user module that raises while being imported."""

raise RuntimeError("raised-while-importing-user-module")
