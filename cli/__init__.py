"""The bbcodec command line (click), a thin layer over :mod:`bbcodec`.

The folder is ``cli/`` in the source tree; it installs as the package
``bbcodec_cli`` (``pyproject.toml`` maps it), so that it never collides with
another distribution's top-level ``cli``. Import it as ``bbcodec_cli``.
"""
