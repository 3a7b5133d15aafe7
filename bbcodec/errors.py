"""Exceptions that bbcodec raises for problems a user can act on."""


class BBCodecError(Exception):
    """Base class: the message is one clear line for the user."""


class CorruptDataError(BBCodecError):
    """Compressed data that cannot be decoded as it claims (damaged, truncated, wrong model)."""


class UnsupportedImageError(BBCodecError):
    """An image that bbcodec refuses rather than alter."""
