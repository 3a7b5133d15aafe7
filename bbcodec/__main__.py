"""``python -m bbcodec``: the ``bbcodec`` command (:mod:`cli.main`)."""
from cli.main import main

main(prog_name="bbcodec")
