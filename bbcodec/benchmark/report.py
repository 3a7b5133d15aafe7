"""Reports on benchmark results: a terminal table, a Markdown page and a bar chart."""
from __future__ import annotations

import math

import numpy as np

from bbcodec.benchmark.results import ModelResult, Report


def _f(value: float, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _speed(value: float) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def format_table(report: Report) -> str:
    """Plain-text tables for a terminal: per set, every codec's rate and speed, the model's overhead split."""
    lines = [f"device {report.environment.get('device_name', report.environment.get('device'))}, "
             f"{report.environment.get('torch_threads')} torch threads, {report.environment.get('date', '')}"]
    for s in report.sets:
        lines += ["", f"{s.name}: {s.images} images ({s.shapes}), {s.subpixels:,} sub-pixels"]
        lines.append(f"  {'codec':22} {'bits/sub-px':>11} {'compress MB/s':>14} {'decompress MB/s':>16}  verified")
        for c in s.codecs:
            lines.append(f"  {c.codec:22} {_f(c.bits_per_subpixel):>11} {_speed(c.compress_mbps):>14} "
                         f"{_speed(c.decompress_mbps):>16}  {c.verified}/{c.images}"
                         + ("  LOSSLESS FAILURE" if c.failures else ""))
        for c in s.codecs:
            if isinstance(c, ModelResult):
                p = c.split()
                lines.append(f"  {c.codec}: file {_f(p['file'])} = -ELBO {_f(p['nelbo'])} + discretization "
                             f"{_f(p['discretization'])} + initial bits {_f(p['initial'])} + stored fallback "
                             f"{_f(p['fallback'])} + container {_f(p['container'])}  ({c.stored_files} of "
                             f"{c.images} files stored raw)")
        for ch in s.chains:
            d = ch.to_dict()
            lines.append(f"  {ch.codec}, one chain of {ch.images} images: {_f(ch.bits_per_subpixel)} bits/sub-px "
                         f"(-ELBO {_f(d['nelbo_bits_per_subpixel'])}, "
                         f"initial bits {_f(d['initial_bits_per_subpixel'], 4)}), "
                         f"{_speed(d['compress_mbps'])} / {_speed(d['decompress_mbps'])} MB/s, "
                         f"{'exact' if ch.exact else 'LOSSLESS FAILURE'}")
        for a in s.archives:
            lines.append(f"  {a.codec}, one archive of {a.images} images in {a.chunks} chunk(s) ({a.stored_chunks} "
                         f"stored raw): {_f(a.bits_per_subpixel)} bits/sub-px, {_speed(a.compress_mbps)} / "
                         f"{_speed(a.decompress_mbps)} MB/s, {'exact' if a.exact else 'LOSSLESS FAILURE'}")
        lines += [f"  note: {n}" for n in s.notes]
    lines += [f"note: {n}" for n in report.notes]
    lines += [f"LOSSLESS FAILURE: {f}" for f in report.failures]
    return "\n".join(lines)


def _codec_names(reports) -> list[str]:
    names = []
    for report in reports:
        for s in report.sets:
            for c in s.codecs:
                if c.codec not in names:
                    names.append(c.codec)
    return names


def _summary(reports) -> list[str]:
    """Who measured what, where: the opening paragraph of the Markdown report."""
    files = sum(c.images for r in reports for s in r.sets for c in s.codecs)
    chained = sum(ch.images for r in reports for s in r.sets for ch in s.chains)
    archived = sum(a.images for r in reports for s in r.sets for a in s.archives)
    counted = [f"{files:,} files", f"{chained:,} chained images"]
    if archived:
        counted.append(f"{archived:,} archived images")
    failures = sum(len(r.failures) for r in reports)
    dates = sorted({r.environment.get("date", "?") for r in reports})
    machines = sorted({r.environment.get("machine", "?") for r in reports})
    devices = sorted({r.environment.get("device_name", "?") for r in reports})
    gpu = "a CUDA GPU was available" if any(r.environment.get("cuda_available") for r in reports) else "no GPU"
    loads = [str(r.environment.get("load_average")) for r in reports if r.environment.get("load_average")]
    verdict = (f"all {', '.join(counted[:-1])} and {counted[-1]} decoded to exactly their pixels" if not failures
               else f"**{failures} LOSSLESS FAILURE(S)**, listed under Runs")
    return [f"Measured with `bbcodec bench` on {', '.join(dates)}. Machine: {'; '.join(machines)}, {gpu}; "
            f"measured on {'; '.join(devices)}. Every size is that of a real file (a whole file format, header "
            f"included; bbcodec's written to disk and measured there), and every file was decoded again and "
            f"compared with the pixels: {verdict}. Speeds are wall-clock times of one process"
            + (f" on a machine shared with other jobs (load average at the start of each run: {', '.join(loads)}), "
               "so they are indicative" if loads else "") + "."]


def markdown(reports, title: str = "bbcodec bench results", preamble: str = "", made_by: str = "",
             chart: str = "") -> str:
    """A Markdown report of one or more runs: rates, chains, archives, overhead split, speeds, commands.

    ``made_by``: the command that wrote the report, recorded under Runs;
    ``chart``: a link to the bar chart (:func:`plot`), shown under the rates."""
    reports = list(reports)
    names = _codec_names(reports)
    sets = [s for r in reports for s in r.sets]
    lines = [f"# {title}", ""] + _summary(reports) + [""]
    if preamble:
        lines += [preamble.strip(), ""]
    lines += ["## Bits per sub-pixel (lower is better; real files, every one decoded and checked)", "",
              "| set | images | sub-pixels | " + " | ".join(names) + " |",
              "|---|---:|---:|" + "---:|" * len(names)]
    for s in sets:
        by_name = {c.codec: c for c in s.codecs}
        best = min((c.bits_per_subpixel for c in s.codecs), default=math.nan)
        cells = []
        for n in names:
            c = by_name.get(n)
            text = _f(c.bits_per_subpixel) if c else "-"
            if c and c.failures:
                text += " (FAILED)"
            bold = c and len(s.codecs) > 1 and c.bits_per_subpixel == best
            cells.append(f"**{text}**" if bold else text)
        lines.append(f"| {s.name} | {s.images:,} | {s.subpixels:,} | " + " | ".join(cells) + " |")
    if chart:
        lines += ["", f"![bits per sub-pixel and throughput per codec]({chart})"]
    chains = [(s, ch) for s in sets for ch in s.chains]
    if chains:
        lines += ["", "## One chain per set (the papers' count: all images on one bits-back chain, payload only)", "",
                  "| set | model | images | bits/sub-pixel | −ELBO | net (stack growth) | initial bits | "
                  "compress MB/s | decompress MB/s | exact |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for s, ch in chains:
            d = ch.to_dict()
            lines.append(f"| {s.name} | {ch.codec} ({ch.model_hash[:12]}), {ch.coder}, {ch.batch} image(s)/step | "
                         f"{ch.images:,} | **{_f(ch.bits_per_subpixel)}** | {_f(d['nelbo_bits_per_subpixel'])} | "
                         f"{_f(d['net_bits_per_subpixel'])} | {_f(d['initial_bits_per_subpixel'], 4)} | "
                         f"{_speed(d['compress_mbps'])} | {_speed(d['decompress_mbps'])} | "
                         f"{'yes' if ch.exact else 'NO'} |")
    archives = [(s, a) for s in sets for a in s.archives]
    if archives:
        lines += ["", "## One archive per set (all images packed into one archive: bits-back chains in chunks that "
                      "decode alone; header, entries and checksums included)", "",
                  "| set | model | images | chunks | bits/sub-pixel | compress MB/s | decompress MB/s | exact |",
                  "|---|---|---:|---:|---:|---:|---:|---|"]
        for s, a in archives:
            chunks = f"{a.chunks:,}" + (f" ({a.stored_chunks:,} stored raw)" if a.stored_chunks else "")
            lines.append(f"| {s.name} | {a.codec} ({a.model_hash[:12]}), {a.coder}, chunks of at most "
                         f"{a.chunk_subpixels:,} sub-pixels | {a.images:,} | {chunks} | "
                         f"**{_f(a.bits_per_subpixel)}** | {_speed(a.compress_mbps)} | {_speed(a.decompress_mbps)} | "
                         f"{'yes' if a.exact else 'NO'} |")
    lines += ["", "## bbcodec: where the bits of the files go (bits per sub-pixel)", "",
              "file = −ELBO + discretization + initial bits + stored fallback + container. −ELBO: the model's "
              "bound on the coded tiles (one posterior sample, the float model, its likelihood calibrated as each file "
              "is); discretization: the "
              "code's net cost above it (latent grid, the coder's quantized probabilities, integer arithmetic, "
              "batches coded without bits back: negative where a chain so coded beats the bound); "
              "initial bits: seed bits consumed by the first pops; stored fallback: the saving of "
              "files stored raw because bits-back would have been larger; container: header and checksums.", "",
              "| set | model | −ELBO | discretization | initial bits | stored fallback | container | file | "
              "files stored raw |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in sets:
        for c in s.codecs:
            if isinstance(c, ModelResult):
                p = c.split()
                lines.append(f"| {s.name} | {c.codec} ({c.model_hash[:12]}) | {_f(p['nelbo'])} | "
                             f"{_f(p['discretization'])} | {_f(p['initial'])} | {_f(p['fallback'])} | "
                             f"{_f(p['container'])} | {_f(p['file'])} | {c.stored_files:,} of {c.images:,} |")
    lines += ["", "## Throughput (MB/s of raw pixels, one byte per sub-pixel): compress / decompress", "",
              "| set | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for s in sets:
        by_name = {c.codec: c for c in s.codecs}
        lines.append(f"| {s.name} | " + " | ".join(
            f"{_speed(by_name[n].compress_mbps)} / {_speed(by_name[n].decompress_mbps)}" if n in by_name else "-"
            for n in names) + " |")
    settings = {}
    for s in sets:
        for c in s.codecs:
            settings.setdefault(c.codec, c.settings)
    lines += ["", "## Codecs", ""] + [f"- {n}: {settings[n]}" for n in names]
    lines += ["", "## Runs (the commands that measured, from the repository root)", ""]
    for report in reports:
        env = report.environment
        versions = ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items() if v)
        lines += [f"- {env.get('date', '')}: {', '.join(s.name for s in report.sets)}; {env.get('machine', '')}; "
                  f"device {env.get('device_name', env.get('device'))}, {env.get('torch_threads')} torch thread(s), "
                  f"load average {env.get('load_average')} at the start; "
                  f"{versions}", "", "  ```sh", f"  {report.command}", "  ```", ""]
        notes = report.notes + [f"{s.name}: {n}" for s in report.sets for n in s.notes]
        lines += [f"  - note: {n}" for n in notes]
        lines += [f"  - LOSSLESS FAILURE: {f}" for f in report.failures]
        if notes or report.failures:
            lines.append("")
    if made_by:
        lines += ["This page was written from the runs' JSON by:", "", "```sh", made_by, "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def _rates(s) -> dict[str, float]:
    """A set's bits per sub-pixel by bar of the chart: every codec's files, then its chains and archives."""
    rates = {c.codec: c.bits_per_subpixel for c in s.codecs}
    rates.update({ch.codec + " (chain)": ch.bits_per_subpixel for ch in s.chains})
    rates.update({a.codec + " (archive)": a.bits_per_subpixel for a in s.archives})
    return rates


def plot(reports, path) -> bool:
    """A bar chart (PNG) of bits per sub-pixel per set and codec, and throughput per codec.

    Returns False (and writes nothing) when matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    reports = [reports] if isinstance(reports, Report) else list(reports)
    sets = [s for r in reports for s in r.sets]
    names = _codec_names(reports)
    bars = names + sorted({name for s in sets for name in _rates(s)} - set(names))
    figure, (rate, speed) = plt.subplots(2, 1, figsize=(max(8, 1.6 * len(sets) + 4), 9), constrained_layout=True)
    width = 0.8 / max(1, len(bars))
    colours = plt.get_cmap("tab10" if len(bars) <= 10 else "tab20")
    for i, name in enumerate(bars):
        values = [_rates(s).get(name, math.nan) for s in sets]
        rate.bar(np.arange(len(sets)) + (i - (len(bars) - 1) / 2) * width, values, width, label=name,
                 color=colours(i))
    rate.set_xticks(np.arange(len(sets)), [s.name for s in sets])
    rate.set(ylabel="bits per sub-pixel (lower is better)", title="Rate: real files, every one verified lossless")
    rate.grid(axis="y", alpha=0.3)
    top = np.nanmax([b.get_height() for b in rate.patches] + [1.0])
    rate.set_ylim(0, top * (1.2 + 0.06 * math.ceil(len(bars) / 4)))  # room for the legend above the bars
    rate.legend(fontsize="small", ncol=4, loc="upper center")
    totals = {n: [0, 0.0, 0.0] for n in names}
    for s in sets:
        for c in s.codecs:
            totals[c.codec][0] += c.subpixels
            totals[c.codec][1] += c.encode_seconds
            totals[c.codec][2] += c.decode_seconds
    x = np.arange(len(names))
    for offset, column, label in ((-0.2, 1, "compress"), (0.2, 2, "decompress")):
        speed.bar(x + offset, [totals[n][0] / 1e6 / totals[n][column] if totals[n][column] else math.nan
                               for n in names], 0.4, label=label)
    speed.set_yscale("log")
    speed.set_xticks(x, names, rotation=20, ha="right")
    device = ", ".join(sorted({r.environment.get("device_name", "") for r in reports}))
    speed.set(ylabel="MB/s of raw pixels (log scale)", title=f"Throughput, all sets together ({device})")
    speed.grid(axis="y", alpha=0.3)
    speed.legend()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True
