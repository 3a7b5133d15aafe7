"""Exceptions that bbcodec raises for problems a user can act on."""


class BBCodecError(Exception):
    """Base class: the message is one clear line for the user."""


class CorruptDataError(BBCodecError):
    """Compressed data that cannot be decoded as it claims (damaged, truncated, wrong model)."""


class UnsupportedImageError(BBCodecError):
    """An image that bbcodec refuses rather than alter."""


def shorten(value, limit: int = 60) -> str:
    """A value from an untrusted file (or an exception), on one line and at most ``limit`` characters, for a message."""
    text = " ".join(str(value).split()) if isinstance(value, BaseException) else " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
