"""``python -m bbcodec``: the ``bbcodec`` command (:mod:`bbcodec_cli.main`)."""
from bbcodec_cli.main import main

main(prog_name="bbcodec")
