"""Training curves as a picture: −ELBO (training, held-out, moving average) and the KL of each latent layer.

Reads the JSON-lines log that :func:`bbcodec.training.loop.train` writes. Needs
matplotlib (``pip install "bbcodec[plot]"``); :func:`plot_training` says so
instead of failing when it is missing.
"""
from __future__ import annotations

import json
from pathlib import Path


def read_log(path) -> list[dict]:
    """The step records of a run's log (the lines that describe the run itself are left out)."""
    records = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return [record for record in records if "step" in record]


def read_stages(paths) -> tuple[list[dict], list[int]]:
    """The records of runs that continued one another (``--init-from``), steps counted from the first
    run's start; and the step at which each later run began."""
    records, starts, offset = [], [], 0
    for path in paths:
        if records:
            starts.append(offset)
        stage = read_log(path)
        records += [{**record, "step": record["step"] + offset} for record in stage]
        offset += max((record["step"] for record in stage), default=0)
    return records, starts


def plot_training(log_path, png_path, title: str | None = None) -> bool:
    """Write the curves of ``log_path`` (one log, or a list of logs of runs that continued one
    another) to ``png_path``; returns False if matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    records, starts = read_stages(log_path if isinstance(log_path, (list, tuple)) else [log_path])
    evals = [r for r in records if "eval_nelbo" in r]
    with_kl = bool(evals) and "kl" in evals[0]  # a family without latent layers (a flow) has no second panel
    figure, axes = plt.subplots(1, 1 + with_kl, figsize=(11 if with_kl else 6, 4), constrained_layout=True,
                                squeeze=False)
    rate = axes[0][0]
    rate.plot([r["step"] for r in records], [r["train_nelbo"] for r in records], lw=0.8, alpha=0.6,
              label="training batch")
    rate.plot([r["step"] for r in evals], [r["eval_nelbo"] for r in evals], "o-", label="held-out")
    averaged = [r for r in evals if "eval_nelbo_ema" in r]
    if averaged:
        rate.plot([r["step"] for r in averaged], [r["eval_nelbo_ema"] for r in averaged], "s--",
                  label="held-out, moving average of the weights")
    for start in starts:
        rate.axvline(start, color="grey", lw=0.8, ls=":")
    rate.set(xlabel="step" + (" (dotted: a run continued from the weights before)" if starts else ""),
             ylabel="−ELBO, bits per sub-pixel", title=title or "−ELBO")
    rate.grid(alpha=0.3)
    rate.legend()
    if with_kl:
        kl = axes[0][1]
        for layer in range(len(evals[0]["kl"])):
            kl.plot([r["step"] for r in evals], [r["kl"][layer] for r in evals], "o-", label=f"z{layer + 1}")
        kl.set(xlabel="step", ylabel="bits per sub-pixel", title="KL per latent layer (training batch)")
        kl.grid(alpha=0.3)
        kl.legend()
    figure.savefig(png_path, dpi=110)
    plt.close(figure)
    return True
