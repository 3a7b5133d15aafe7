"""Codec models: families (:mod:`bbcodec.models.family`), their configs, presets and model files.

Importing this package registers the families shipped with bbcodec.
"""
from bbcodec.models import flowpp, markov_vae, polyphase_vae, topdown_vae  # noqa: F401  (register the shipped families)
