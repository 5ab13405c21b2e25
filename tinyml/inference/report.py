"""One row per weight format: what ``tinyml quant`` prints and the docs tabulate.

Each row: bits per weight, model size, fits (weights + one sequence of
``context`` tokens), KV budget (tokens), max batch at ``context``, the
bandwidth-bound tokens/s at batch 1, and the simulated tokens/s of one decode
step through the kernels (:mod:`.step`; the CUDA-graph time, with the eager
one next to it). A format whose weights do not fit gets no tokens/s.
"""

from __future__ import annotations

from ..sim import load_device
from ..sim.models import load_model
from .bound import bandwidth_bound
from .formats import DEFAULT_FORMATS, weight_format
from .memory import fit


def serving_rows(model, device, formats=DEFAULT_FORMATS, *, context: "int | None" = None,
                 simulate: bool = True, split_kv: "int | None" = None) -> list[dict]:
    """The rows for ``model`` on ``device`` (``context`` defaults to the model's max_context)."""
    m, dev = load_model(model), load_device(device)
    fmts = [weight_format(f) for f in formats]                  # unknown names fail before any work
    context = m.max_context if context is None else context
    rows, fits = [], []
    for f in fmts:
        fi = fit(m, f, dev, context=context)
        fits.append(fi)
        row = {"model": m.name, "device": dev.name, "format": f.name, "context": context,
               "bits_per_weight": fi.bits_per_weight, "size_bytes": fi.weight_bytes, "fits": fi.fits,
               "kv_budget_tokens": fi.kv_budget_tokens, "max_batch": fi.max_batch,
               "bound_tokens_per_s": None, "hbm_efficiency": dev.eff_hbm, "sim_tokens_per_s": None,
               "sim_eager_tokens_per_s": None, "fraction_of_bound": None}
        if fi.weights_fit:
            row["bound_tokens_per_s"] = bandwidth_bound(m, f, dev, context=context).tokens_per_s
            if simulate:
                from .step import simulate_step

                s = simulate_step(m, f, dev, context=context, split_kv=split_kv)
                row.update(sim_tokens_per_s=s.tokens_per_s, sim_eager_tokens_per_s=s.eager_tokens_per_s,
                           fraction_of_bound=s.tokens_per_s / row["bound_tokens_per_s"])
        rows.append(row)
    for row, fi in zip(rows, fits):
        row["note"] = None if fi.fits else fit_note(fi, rows, dev)
    return rows


def capacity_source(device) -> str:
    """Where ``device``'s memory capacity comes from (its preset's source for ``[hbm] capacity_bytes``)."""
    dev = load_device(device)
    return dev.sources.get("hbm.capacity_bytes", f"{dev.name}'s device file")


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def fit_note(fi, rows: list[dict], device) -> str:
    """Why a format does not fit ``device`` (a :class:`~.memory.Fit` that does not) and which of ``rows``
    (serving rows of the same model) do fit, with their tokens/s."""
    dev = load_device(device)
    cap = f"{_gb(fi.capacity_bytes)} {dev.name} gives the model"
    if not fi.weights_fit:
        head = f"{fi.format} does not fit: its weights alone take {_gb(fi.weight_bytes)}, more than the {cap}"
    else:
        head = (f"{fi.format} does not fit: its weights ({_gb(fi.weight_bytes)}) leave room for "
                f"{fi.kv_budget_tokens:,} tokens of KV cache in the {cap}, fewer than one sequence of "
                f"{fi.context:,} (pass a shorter --context)")
    ok = [r for r in rows if r["fits"]]
    if not ok:
        return head + "; none of the formats asked for fits: try a 4-bit one (q4_0, int4-g128) or a smaller model"
    alts = ", ".join(f"{r['format']} ({_gb(r['size_bytes'])}"
                     + (f", {r['sim_tokens_per_s']:,.1f} tokens/s" if r["sim_tokens_per_s"] else "") + ")"
                     for r in ok)
    return head + f"; fits here: {alts}"


def size_table(model, devices, formats) -> list[dict]:
    """Model size per format and, per device, whether it fits with one max-context sequence."""
    m = load_model(model)
    out = []
    for f in formats:
        row = {"format": weight_format(f).name}
        for d in devices:
            fi = fit(m, f, d)
            row.setdefault("bits_per_weight", fi.bits_per_weight)
            row.setdefault("size_bytes", fi.weight_bytes)
            row[load_device(d).name] = fi.fits
        out.append(row)
    return out
