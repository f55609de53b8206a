"""``python3 -m amlcyto``: the same as the ``amlcyto`` command."""

from amlcyto.cli.main import app

app(prog_name="amlcyto")
