"""`python -m asyncsim ARGS` runs the `asyncsim` command."""

from .cli import main

raise SystemExit(main())
