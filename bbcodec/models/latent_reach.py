"""How far a model's posteriors reach against the bound of its latent grid.

Bits-back coding pops each latent from the posterior discretized on the
model's :class:`~bbcodec.distributions.LatentGrid`; posterior mass
beyond the grid's bound is clipped onto its outer points, where a pop gives
back far fewer bits than the −ELBO counts (the grid's docstring has the
measured cost). The reach of a posterior element is ``|mean| + 3 std``; a
model whose reach often passes its bound should be exported with a wider one
(``bbcodec export --grid-bound``).
"""
from __future__ import annotations

import math

import torch

from bbcodec.coding.bitsback import coded_cost

REACH_STDS = 3.0
WARN_SHARE = 0.005
"""The share of posterior elements reaching past the bound above which ``bbcodec train`` suggests a wider grid."""


def posterior_reach(model, x: torch.Tensor) -> list[torch.Tensor]:
    """``|mean| + 3 std`` of every posterior element, one flat tensor per latent layer (in the order the
    model's default coder pops them).

    ``model`` is anything with the coders' interface (a codec model, or a
    :class:`~bbcodec.coding.image.TileView` for grey planes); ``x`` a uint8
    batch. The coder runs on a :class:`~bbcodec.coding.bitsback.CostStack`:
    one posterior sample of each layer feeds the next, as in coding.
    """
    popped = coded_cost(model, x, model.coders[0]).popped
    return [(q.mean.abs() + REACH_STDS * q.std).flatten() for q in popped]


def share_beyond(reach: list[torch.Tensor], bound: float) -> float:
    """The share of all posterior elements whose reach passes ``bound``."""
    values = torch.cat(reach)
    return (values > bound).float().mean().item() if values.numel() else 0.0


def grid_advice(model, x: torch.Tensor) -> str | None:
    """A one-line suggestion when the model's posteriors on ``x`` often reach past its grid's bound, else None."""
    if not model.coders:  # a density model has no latent grid
        return None
    bound = model.config.grid_bound
    reach = posterior_reach(model, x)
    share = share_beyond(reach, bound)
    if share <= WARN_SHARE:
        return None
    largest = max(values.max().item() for values in reach)
    wider = min(64, 2 * bound, math.ceil(largest))  # at most double, within what model files allow
    return (f"{share:.1%} of the held-out posteriors reach past the latent grid's bound {bound:g}, which costs rate; "
            f"try bbcodec export CHECKPOINT --grid-bound {wider:g} and compare the files (bench/latent_reach.py)")
