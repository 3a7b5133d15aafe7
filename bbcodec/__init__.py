"""bbcodec: lossless image compression with binarized hierarchical VAEs and bits-back ANS coding.

The public API (see :mod:`bbcodec.api`)::

    import bbcodec
    data = bbcodec.compress("photo.png")          # .bbc bytes
    image = bbcodec.decompress(data)               # bbcodec.Image, exact pixels
    bbcodec.write_image(image, "restored.png")
    bbcodec.info(data)                             # the header, without decoding
"""
from bbcodec.api import compress, decompress, info
from bbcodec.coding.image import CoderSettings
from bbcodec.errors import BBCodecError, CorruptDataError, UnsupportedImageError
from bbcodec.imageio import Image, read_image, write_image
from bbcodec.zoo import load as load_model

__all__ = ["compress", "decompress", "info", "CoderSettings", "Image", "read_image", "write_image",
           "load_model", "BBCodecError", "CorruptDataError", "UnsupportedImageError"]
__version__ = "0.1.0"
