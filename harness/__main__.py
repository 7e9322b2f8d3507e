"""``python -m harness`` is the ``mibench`` command."""

from harness.cli import app

app(prog_name="mibench")
