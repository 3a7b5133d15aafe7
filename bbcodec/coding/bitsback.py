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

* Top-down BB-ANS (HiLLoC: Townsend, Bird, Kucsko & Barber, ICLR 2020) for a
  model whose posterior of each layer sees x and all the layers above
  (:mod:`bbcodec.models.topdown_vae`): pop z_L .. z_1 from q(z_i | x, z_>i)
  (the order inference runs in), push x under p(x | z), then push z_1 .. z_L
  under p(z_i | z_>i), so that the decoder pops the latents top-down, as the
  generative model runs, then x, and gives the latents back. Like BB-ANS, the
  first image needs initial bits for every layer.

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


def _latents_like(model, x: torch.Tensor) -> torch.Tensor:
    """Zeros shaped like the latents of one layer for the batch ``x``."""
    return torch.zeros(len(x), *model.latent_shape(x.shape[1:]), device=x.device)


def _prior_modes(model, latent_like: torch.Tensor) -> torch.Tensor:
    """z1 when every latent is the mode of its prior: z_L of p(z_L), then each z_i of p(z_i | z_i+1)."""
    z = model.top_prior(latent_like).mode()
    for layer in reversed(range(1, model.depth)):
        z = model.conditional(layer, z).mode()
    return z


@torch.no_grad()
def no_bits_back_encode(ans: AnsStack, model, x: torch.Tensor) -> None:
    # push x under p(x | z1 at the prior's modes)
    ans.push(x, model.conditional(0, _prior_modes(model, _latents_like(model, x))))


@torch.no_grad()
def no_bits_back_decode(ans: AnsStack, model, latent_like: torch.Tensor) -> torch.Tensor:
    return ans.pop(model.conditional(0, _prior_modes(model, latent_like)))  # pop x given the same z1


@torch.no_grad()
def topdown_encode(ans: AnsStack, model, x: torch.Tensor) -> None:
    features = model.bottom_up(x)
    state = model.top_state(_latents_like(model, x))
    priors, latents = [], []
    for layer in reversed(range(model.depth)):            # pop z_L..z1 from q(z_i | x, z_>i)
        z = ans.pop(model.inference(layer, state, features))
        priors.append(model.prior(layer, state))
        latents.append(z)
        state = model.descend(layer, state, z)
    ans.push(x, model.likelihood(state))                  # push x under p(x | z)
    for prior, z in zip(reversed(priors), reversed(latents)):
        ans.push(z, prior)                                # push z1..z_L under p(z_i | z_>i)


@torch.no_grad()
def topdown_decode(ans: AnsStack, model, latent_like: torch.Tensor) -> torch.Tensor:
    state, states, latents = model.top_state(latent_like), [], []
    for layer in reversed(range(model.depth)):            # pop z_L..z1 given the layers above
        states.append(state)
        latents.append(ans.pop(model.prior(layer, state)))
        state = model.descend(layer, state, latents[-1])
    x = ans.pop(model.likelihood(state))                  # pop x given z
    features = model.bottom_up(x)
    for layer, state, z in zip(range(model.depth), reversed(states), reversed(latents)):
        ans.push(z, model.inference(layer, state, features))  # give z1..z_L back under q, last pop first
    return x


def _topdown_prior_modes(model, latent_like: torch.Tensor) -> torch.Tensor:
    """The state below z1 when every latent is the mode of its prior given the layers above."""
    state = model.top_state(latent_like)
    for layer in reversed(range(model.depth)):
        state = model.descend(layer, state, model.prior(layer, state).mode())
    return state


@torch.no_grad()
def topdown_no_bits_back_encode(ans: AnsStack, model, x: torch.Tensor) -> None:
    # push x under p(x | z at the prior's modes)
    ans.push(x, model.likelihood(_topdown_prior_modes(model, _latents_like(model, x))))


@torch.no_grad()
def topdown_no_bits_back_decode(ans: AnsStack, model, latent_like: torch.Tensor) -> torch.Tensor:
    return ans.pop(model.likelihood(_topdown_prior_modes(model, latent_like)))  # pop x given the same z


CODERS = {
    "bitswap": (bitswap_encode, bitswap_decode),
    "bbans": (bbans_encode, bbans_decode),
    "topdown": (topdown_encode, topdown_decode),
}
"""The (encode, decode) pair of each coder, by the name that files store."""

NO_BITS_BACK = {
    "bitswap": (no_bits_back_encode, no_bits_back_decode),
    "bbans": (no_bits_back_encode, no_bits_back_decode),
    "topdown": (topdown_no_bits_back_encode, topdown_no_bits_back_decode),
}
"""The push/pop pair that codes a batch without bits back (see the module doc), for each coder's models."""


class CostStack:
    """A stand-in for the ANS stack that counts what a coder would cost instead of coding (nats).

    A pop draws a sample of the distribution (``rsample``) and gains its log
    probability (the bits it gets back), a push pays the value's negative log
    probability: running a coder's encoder on it gives that coder's −ELBO of
    the batch, one posterior sample, in float, for any model structure.
    ``popped`` lists the distributions popped, in order.
    """

    def __init__(self):
        self.nats, self.popped = 0.0, []

    def pop(self, dist):
        value = dist.rsample()
        self.nats += float(dist.log_prob(value).double().sum())
        self.popped.append(dist)
        return value

    def push(self, value, dist) -> None:
        self.nats -= float(dist.log_prob(value).double().sum())


def coded_cost(model, x: torch.Tensor, coder: str) -> CostStack:
    """What ``coder`` costs to code the batch ``x`` with ``model``, counted on a :class:`CostStack`."""
    stack = CostStack()
    CODERS[coder][0](stack, model, x)
    return stack
