"""The PyTorch side of `examples/gemm_shapes.rs`: the same products of one
MiniLM-L6 encoder layer, 2 threads, best of 9 after two warm-up calls.

    ~/.cache/valor-peers-venv/bin/python crates/valor-bert/examples/gemm_shapes.py
"""
import time

import torch

torch.set_num_threads(2)
HIDDEN, INTER, HEADS, HEAD = 384, 1536, 12, 32


def best(f):
    f()
    f()
    ts = []
    for _ in range(9):
        s = time.perf_counter()
        f()
        ts.append(time.perf_counter() - s)
    ts.sort()
    return ts[0]


def line(what, shape, t, flop):
    print(f"{what:28} {shape:>22} {t * 1e3:9.3f} ms {flop / t / 1e9:7.1f} GFLOP/s")


print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
with torch.no_grad():
    for b, s in [(32, 128), (32, 64), (1, 128), (1, 64)]:
        m = b * s
        layer = 0.0
        for n, k in [(HIDDEN, HIDDEN), (INTER, HIDDEN), (HIDDEN, INTER)]:
            x, w = torch.randn(m, k), torch.randn(n, k)
            t = best(lambda: torch.nn.functional.linear(x, w))
            layer += t * (4 if n == k == HIDDEN else 1)
            line("torch linear", f"{m}x{n}x{k}", t, 2 * m * n * k)
        flop = 2 * b * HEADS * s * s * HEAD
        q, kk, v = (torch.randn(b, s, HIDDEN).view(b, s, HEADS, HEAD).transpose(1, 2) for _ in range(3))
        t_qk = best(lambda: torch.matmul(q, kk.transpose(-1, -2)))
        line("torch scores q·kᵀ", f"b{b} s{s}", t_qk, flop)
        p = torch.randn(b, HEADS, s, s)
        t_pv = best(lambda: torch.matmul(p, v))
        line("torch context p·v", f"b{b} s{s}", t_pv, flop)
        total = layer + t_qk + t_pv
        print(f"one layer's products (torch) b{b} s{s}: {total * 1e3:.3f} ms; six layers {6 * total * 1e3:.1f} ms")
