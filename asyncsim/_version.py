"""The version of asyncsim (one place: the package, the CLI and report metadata read it)."""

__version__ = "0.1.0"
