"""BB-ANS and Bit-Swap: the order in which a hierarchical VAE codes an image.

Both push a batch of images ``x`` onto an :class:`~bbcodec.coding.ans.AnsStack`
at a net cost of -log p(x | z1) - sum log p(z_i | z_i+1) + sum log q(z_i | z_i-1),
the negative ELBO, by first *popping* latents from the posterior ("getting bits
back") and then *pushing* the image and the latents under the generative model.

* BB-ANS (Townsend, Bird & Barber, ICLR 2019) pops the whole chain z1..zL from
  q before it pushes anything, so the first image needs initial bits for all L
  latent layers.
* Bit-Swap (Kingma, Abbeel & Ho, ICML 2019) interleaves: pop z_i, then push
  z_i-1 at once, so only z1 needs initial bits and later layers are paid for
  by the bits just pushed.

* No bits back (for the first batch of a chain only, :mod:`bbcodec.coding.chain`):
  the latents are not coded at all but set to the modes of the prior chain,
  z_L at the top prior's mode and each z_i at the mode of p(z_i | z_i+1), so
  that only x is pushed, under p(x | z1). A batch that starts a chain has no
  bits to get back: its pops would be paid for by initial bits, the whole
  posterior entropy of its latents. When the pixels hardly depend on the
  latents (a likelihood that sees decoded pixels), coding them under the
  prior's modes costs far less than those initial bits; split hierarchical
  variational compression (Ryder et al., CVPR 2022) starts its chains alike.

Decoding runs each encoder backwards, step by step, with the same network
calls on the same tensors, so the decoder recomputes every distribution bit for
bit. Each function is meant to be read top to bottom next to its paper.
"""
from __future__ import annotations

import torch

from bbcodec.coding.ans import AnsStack


@torch.no_grad()
def bbans_encode(ans: AnsStack, model, x: torch.Tensor) -> None:
    latents, below = [], x
    for layer in range(model.depth):                      # pop z1..zL from q
        below = ans.pop(model.posterior(layer, below))
        latents.append(below)
    ans.push(x, model.conditional(0, latents[0]))         # push x under p(x | z1)
    for layer in range(1, model.depth):                   # push z_i under p(z_i | z_i+1)
        ans.push(latents[layer - 1], model.conditional(layer, latents[layer]))
    ans.push(latents[-1], model.top_prior(latents[-1]))   # push zL under p(zL)


@torch.no_grad()
def bbans_decode(ans: AnsStack, model, latent_like: torch.Tensor) -> torch.Tensor:
    latents = [ans.pop(model.top_prior(latent_like))]     # pop zL
    for layer in reversed(range(1, model.depth)):         # pop z_i given z_i+1
        latents.insert(0, ans.pop(model.conditional(layer, latents[0])))
    x = ans.pop(model.conditional(0, latents[0]))         # pop x given z1
    for layer in reversed(range(model.depth)):            # give zL..z1 back under q, last pop first
        below = x if layer == 0 else latents[layer - 1]
        ans.push(latents[layer], model.posterior(layer, below))
    return x


@torch.no_grad()
def bitswap_encode(ans: AnsStack, model, x: torch.Tensor) -> None:
    below = x
    for layer in range(model.depth):
        z = ans.pop(model.posterior(layer, below))        # bits back: z_i ~ q(z_i | z_i-1)
        ans.push(below, model.conditional(layer, z))      # push z_i-1 (x first) under p(z_i-1 | z_i)
        below = z
    ans.push(below, model.top_prior(below))               # push zL under p(zL)


@torch.no_grad()
def bitswap_decode(ans: AnsStack, model, latent_like: torch.Tensor) -> torch.Tensor:
    z = ans.pop(model.top_prior(latent_like))             # pop zL
    for layer in reversed(range(model.depth)):
        below = ans.pop(model.conditional(layer, z))      # pop z_i-1 (x last) given z_i
        ans.push(z, model.posterior(layer, below))        # give the bits of z_i back under q
        z = below
    return z


def _prior_modes(model, latent_like: torch.Tensor) -> torch.Tensor:
    """z1 when every latent is the mode of its prior: z_L of p(z_L), then each z_i of p(z_i | z_i+1)."""
    z = model.top_prior(latent_like).mode()
    for layer in reversed(range(1, model.depth)):
        z = model.conditional(layer, z).mode()
    return z


@torch.no_grad()
def no_bits_back_encode(ans: AnsStack, model, x: torch.Tensor) -> None:
    like = torch.zeros(len(x), *model.latent_shape(x.shape[1:]), device=x.device)
    ans.push(x, model.conditional(0, _prior_modes(model, like)))  # push x under p(x | z1 at the prior's modes)


@torch.no_grad()
def no_bits_back_decode(ans: AnsStack, model, latent_like: torch.Tensor) -> torch.Tensor:
    return ans.pop(model.conditional(0, _prior_modes(model, latent_like)))  # pop x given the same z1


NO_BITS_BACK = (no_bits_back_encode, no_bits_back_decode)
"""The push/pop pair that codes a batch without bits back (see the module doc)."""

CODERS = {
    "bitswap": (bitswap_encode, bitswap_decode),
    "bbans": (bbans_encode, bbans_decode),
}
