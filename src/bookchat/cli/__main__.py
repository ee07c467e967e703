"""`python -m bookchat.cli`."""

from bookchat.cli import app

app()
