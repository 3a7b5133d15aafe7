"""The bbcodec command line (click), a thin layer over :mod:`bbcodec`."""
