"""Counting a trial one block per edge class (tinyml.compiler.tune.one_class) equals counting
every block: padded convolutions (windows clipped at the image border), strided ones, and tiles
that do not divide their axis (a partial last tile), at random small shapes and tiles."""

from __future__ import annotations

import math
import random
import time

from hypothesis import given, settings, strategies as st

from strategies import examples
from tinyml.compiler.tensor import build, conv2d, matmul
from tinyml.compiler.tensor.examples import blocked_conv2d, tiled_matmul
from tinyml.compiler.tune import templates as T
from tinyml.compiler.tune.one_class import block_classes, count_by_class
from tinyml.compiler.tune.space import Space
from tinyml.sim import Profile, meta

SKIP = ("start_s", "peak_hbm_bytes")


def _both(sch, device="a100-40gb"):
    """(the record counting every block, the record counting one block per class, the classes)."""
    kernel = build(sch, parallel=False)
    with Profile(device) as full:
        kernel(*(meta(b.shape, b.dtype) for b in kernel.func.inputs), by_class=False)
    with Profile(device) as by_class:
        count_by_class(kernel)
    strip = lambda r: {k: v for k, v in r.to_dict().items() if k not in SKIP}  # noqa: E731
    return strip(full.records[0]), strip(by_class.records[0]), block_classes(kernel)


convs = st.tuples(st.integers(1, 2), st.sampled_from([4, 8]), st.integers(3, 13), st.integers(3, 13),
                  st.sampled_from([8, 16]), st.sampled_from([(1, 0), (3, 1), (3, 0), (5, 2), (7, 3), (1, 1)]),
                  st.integers(1, 2))


@settings(max_examples=examples(6), deadline=None)
@given(shape=convs, seed=st.integers(0, 10_000))
def test_template_conv_candidates_count_the_same_by_class(shape, seed):
    n, c, h, w, f, (k, pad), stride = shape
    if (h + 2 * pad - k) // stride + 1 < 1 or (w + 2 * pad - k) // stride + 1 < 1:
        return
    func = conv2d(n, c, h, w, f, k, k, stride=stride, pad=pad, dtype="fp32")
    space = Space(func, T.conv2d_gpu)
    full, by_class, (ids, run_class, run_length) = _both(space.schedule(space.sample(random.Random(seed))))
    assert full == by_class
    assert run_length.sum() == math.prod(full["grid"]) and len(ids) <= full["n_blocks"]


@settings(max_examples=examples(10), deadline=None)
@given(shape=convs, bf=st.integers(1, 16), by=st.integers(1, 6))
def test_tiles_that_do_not_divide_count_the_same_by_class(shape, bf, by):
    n, c, h, w, f, (k, pad), stride = shape
    oh = (h + 2 * pad - k) // stride + 1
    if oh < 1 or (w + 2 * pad - k) // stride + 1 < 1:
        return
    func = conv2d(n, c, h, w, f, k, k, stride=stride, pad=pad, dtype="fp32")
    full, by_class, _ = _both(blocked_conv2d(func, min(bf, f), min(by, oh)))
    assert full == by_class


@settings(max_examples=examples(8), deadline=None)
@given(m=st.integers(16, 90), n=st.integers(16, 90), k=st.integers(16, 90),
       bm=st.sampled_from([16, 32]), bn=st.sampled_from([16, 32]), bk=st.sampled_from([16, 32]))
def test_a_partial_last_tile_counts_the_same_by_class(m, n, k, bm, bn, bk):
    full, by_class, (ids, _, _) = _both(tiled_matmul(matmul(m, n, k, "fp32"), bm, bn, bk, tensorize=False))
    assert full == by_class
    assert len(ids) <= 4                  # interior, last row, last column, corner


def test_a_padded_3x3_conv_at_224_has_at_most_nine_classes_and_counts_fast():
    """ResNet-50's stem-sized 3x3 layer at 224 x 224 (64 -> 64 channels, pad 1): 3 x 3 edge positions
    however many blocks; counted by class in well under a second of CPU (full counting walks all)."""
    func = conv2d(1, 64, 224, 224, 64, 3, 3, pad=1)
    space = Space(func, T.conv2d_gpu)
    sch = space.schedule(((2, 32), (56, 4), (7, 32), (4, 16), 0))
    kernel = build(sch, parallel=False)
    ids, run_class, run_length = block_classes(kernel)
    assert len(ids) == 9 and run_length.sum() == math.prod(kernel.grid) == 2 * 56 * 7
    with Profile("a100-40gb"):
        count_by_class(kernel)                              # compile (cached) outside the timing
    t0 = time.process_time()
    with Profile("a100-40gb") as prof:
        count_by_class(kernel)
    assert time.process_time() - t0 < 1.0
    assert prof.records[0].n_blocks == 2 * 56 * 7
