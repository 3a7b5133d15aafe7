"""Layers for binarized VAEs (Bird, Kingma & Barber, ICLR 2021)."""
from bbcodec.nn.binary import BinaryConv2d, WNConv2d, SignSTE, sign_ste, make_conv
from bbcodec.nn.blocks import ResidualBlock

__all__ = ["BinaryConv2d", "WNConv2d", "SignSTE", "sign_ste", "make_conv", "ResidualBlock"]
