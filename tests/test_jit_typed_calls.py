"""tinyml.sim.jit.njit: a jitted helper compiles once per argument *type*, whatever constants its callers pass.

Plain ``numba.njit`` types a constant argument at a call site from another jitted function by its value
(``Literal[int](1)``) and compiles the callee once per value: the tile helpers were compiled 27-36 times
each by the first tour. These tests fail if a helper is compiled per constant again.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

import numpy as np
from numba.core.registry import CPUDispatcher

import tinyml
from tinyml.kernels.matmul import matmul
from tinyml.kernels.quant import QuantizedTensor
from tinyml.sim import Profile, meta
from tinyml.sim.counters import FIRST_OPERAND, new_counters
from tinyml.sim.jit import TypedCallsDispatcher, hashed_sources, njit
from tinyml.sim.tiles import load_tile


def test_a_helper_called_with_three_constants_compiles_once():
    @njit
    def helper(x, k):
        return x + k

    @njit
    def one_and_two(x):
        return helper(x, 1) + helper(x, 2)

    @njit
    def three(x):
        return helper(x, 3)

    assert one_and_two(1.0) == 5.0 and three(1.0) == 4.0
    assert isinstance(helper, TypedCallsDispatcher)
    assert [str(s) for s in helper.signatures] == ["(float64, int64)"]


def test_a_helper_that_needs_the_constant_still_gets_it():
    @njit
    def pick(pair, i):
        return pair[i]                 # a heterogeneous tuple indexes only with a constant

    @njit
    def second():
        return pick((1, 2.5), 1)

    assert second() == 2.5
    assert any("Literal[int](1)" in str(s) for s in pick.signatures)


def test_the_tile_helpers_compile_once_for_two_operands_and_two_bit_widths():
    @njit
    def load_two(src, dst, counters):
        load_tile(src, 0, 0, 4, 4, dst, True, counters, 0, 1, 16)     # operand 1, fp16
        load_tile(src, 0, 0, 4, 4, dst, True, counters, 0, 2, 32)     # operand 2, fp32

    src, dst = np.ones((8, 8), np.float32), np.zeros((4, 4), np.float32)
    counters = new_counters(1, n_operands=3)
    load_two(src, dst, counters)
    assert np.array_equal(dst, src[:4, :4])
    assert counters[0, FIRST_OPERAND + 1] == 16 * 2 and counters[0, FIRST_OPERAND + 2] == 16 * 4
    assert len(load_tile.signatures) >= 1
    assert not [s for s in load_tile.signatures if "Literal" in str(s)], load_tile.signatures


def tinyml_dispatchers() -> dict:
    """Every jitted function tinyml defines, by qualified name."""
    for info in pkgutil.walk_packages(tinyml.__path__, "tinyml."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    return {f"{name}.{attr}": obj for name, module in list(sys.modules.items()) if name.startswith("tinyml.")
            for attr, obj in vars(module).items() if isinstance(obj, CPUDispatcher)}


def test_every_jitted_function_in_tinyml_types_its_calls_this_way():
    found = tinyml_dispatchers()
    assert len(found) > 50
    plain = [name for name, obj in found.items() if not isinstance(obj, TypedCallsDispatcher)]
    assert not plain, f"decorated with numba.njit instead of tinyml.sim.jit.njit: {plain}"


def test_the_cache_folder_changes_with_every_file_that_defines_a_jitted_function():
    hashed = {p.resolve() for p in hashed_sources()}
    missed = {name: obj.py_func.__code__.co_filename for name, obj in tinyml_dispatchers().items()
              if Path(obj.py_func.__code__.co_filename).resolve() not in hashed}
    assert not missed, f"an edit to these files would keep stale machine code in the cache: {missed}"


def frozen(a: np.ndarray) -> np.ndarray:
    """``a`` read-only, as a compiled graph keeps its weights."""
    a = a.copy()
    a.flags.writeable = False
    return a


def input_flags(body, positions) -> set:
    """For every signature ``body`` has in this process: whether each input position is read-only."""
    return {tuple(sig[i].mutable for i in positions) for sig in body.signatures}


def test_graph_kernels_get_their_inputs_read_only_whoever_calls_them():
    """A user's writable arrays, a graph's frozen weights and counting's stand-ins reach each body with the
    same signature (writability is part of it): the body compiles once, not two or three times."""
    from tinyml.kernels.fusion import epilogue, layernorm, matmul_epilogue
    from tinyml.kernels.fusion.layernorm import layernorm_fused
    from tinyml.kernels.matmul import v3_mma
    from tinyml.kernels.quant import Int8PerChannel, matmul as qmatmul, quantize, quantized_matmul

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((6, 8)).astype(np.float32), rng.standard_normal((8, 5)).astype(np.float32)
    bias, res = rng.standard_normal(5).astype(np.float32), rng.standard_normal((6, 5)).astype(np.float32)
    g, beta = np.ones(8, np.float32), np.zeros(8, np.float32)
    q = quantize(rng.standard_normal((5, 8)).astype(np.float32), Int8PerChannel())
    with Profile("a100-80gb"):
        for x, w in ((a, b), (frozen(a), frozen(b)), (meta(a.shape), meta(b.shape))):
            matmul(x, w, version=3, block_m=16, block_n=16, block_k=16)
            matmul_epilogue(x, w, activation="relu")                                   # no bias, no residual
            layernorm_fused(x, frozen(g) if isinstance(x, np.ndarray) else meta(g.shape),
                            beta if isinstance(x, np.ndarray) else meta(beta.shape))
        matmul_epilogue(a, frozen(b), bias=frozen(bias), residual=res)
        matmul_epilogue(frozen(a), b, bias=bias)
        quantized_matmul(a, q)
        quantized_matmul(frozen(a), q, bias=frozen(bias))
        quantized_matmul(meta(a.shape), QuantizedTensor.meta(q.shape, q.scheme))
    assert input_flags(v3_mma._body, (0, 1)) == {(False, False)}
    assert input_flags(epilogue._body, (0, 1, 3, 4)) == {(False,) * 4}
    assert input_flags(layernorm._body, (0, 1, 2)) == {(False,) * 3}
    assert input_flags(qmatmul._body, (0, 1)) == {(False, False)}
