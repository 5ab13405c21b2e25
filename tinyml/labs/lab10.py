"""Checks for Lab 10, end to end (``labs/lab10_end_to_end.py``).

``quantized_bytes`` is compared with the packed size tinyml's quantizer gives
the same shape (``QuantizedTensor.meta(shape, fmt).nbytes``) for every format
of the lab, on shapes whose K is and is not a multiple of the group.
``greedy_generate`` runs compiled tiny GPTs (quantized, with a memory plan)
and must return the tokens greedy decoding with the reference interpreter
gives, computed here on the same compiled graph.
"""

from __future__ import annotations

import numpy as np

from .checks import Exercise, Wrong, as_int, call


# ---- 10.1 quantized_bytes -------------------------------------------------------------------------

def check_quantized_bytes(fn) -> str:
    from ..kernels.quant import QuantizedTensor

    shapes = [(1, 32), (768, 768), (2304, 768), (50257, 768), (3, 100), (17, 1000), (5, 33)]
    formats = ["int8", "q8_0", "q4_0", "int4-g32", "int4-g64", "int4-g128"]
    checked = 0
    for fmt in formats:
        for n, k in shapes:
            if fmt in ("q8_0", "q4_0") and k % 32:
                continue                                     # llama.cpp's formats do not pad
            want = QuantizedTensor.meta((n, k), fmt).nbytes
            got = as_int(call(fn, n, k, fmt), f"quantized_bytes({n}, {k}, {fmt!r})")
            if got != want:
                raise Wrong(f"quantized_bytes({n}, {k}, {fmt!r}) = {got:,}, expected {want:,} "
                            f"({want * 8 / (n * k):.3f} bits per weight). Hint: per row, ceil(K / g) groups, each "
                            f"a 2-byte scale plus g codes of b bits (the last group padded to g); int8 has one "
                            f"group per row.")
            checked += 1
    return f"right for {checked} shape/format pairs (padded groups included)"


# ---- 10.2 greedy_generate ---------------------------------------------------------------------------

def _models():
    from ..compiler import compile, zoo

    out = []
    for seed, scheme in ((0, "q4_0"), (1, "int8")):
        g = zoo.get("tiny_gpt", layers=1, vocab=61, d_model=32, n_heads=2, n_ctx=32, seed=seed)
        out.append(compile(g, passes="all", bounds={"n": 16}, scheme=scheme, explain=False))
    return out


def check_greedy_generate(fn) -> str:
    from ..compiler import interpret

    runs = 0
    for model in _models():
        for prompt, steps in (([3], 1), ([5, 17, 42], 4), ([1, 2, 3, 4, 5, 6], 3)):
            want = list(prompt)
            for _ in range(steps):
                (logits,) = interpret(model.graph, {"ids": np.asarray(want, np.int32)})
                want.append(int(np.argmax(logits[-1])))
            got = call(fn, model, list(prompt), steps)
            if not isinstance(got, (list, tuple, np.ndarray)):
                raise Wrong(f"greedy_generate(<model>, {prompt}, {steps}) returned {got!r}; return a list of ints")
            got = [as_int(t, "a token id") for t in np.asarray(got).reshape(-1).tolist()]
            if got != want:
                why = ("the prompt must come first" if got[:len(prompt)] != list(prompt) else
                       f"{len(got) - len(prompt)} new tokens instead of {steps}" if len(got) != len(want) else
                       "the tokens differ")
                raise Wrong(f"greedy_generate(<model>, {prompt}, {steps}) = {got}, expected {want} ({why}). Hint: "
                            f"run on the whole sequence so far, take np.argmax(logits[-1]) (the last row), "
                            f"append it, repeat.")
            runs += 1
    return f"same tokens as the reference interpreter in {runs} generations (q4_0 and int8 models, memory planned)"


EXERCISES = (
    Exercise("10.1", "quantized_bytes", "the bytes of a quantized (N, K) weight in each format",
             check_quantized_bytes),
    Exercise("10.2", "greedy_generate", "greedy decoding through the compiled model", check_greedy_generate),
)
