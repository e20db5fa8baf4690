"""Analytic FLOPs of one DCGAN train step, counted as torch's FlopCounterMode counts torch_reference.py.

Only convolutions count (2 FLOPs per multiply-add); a convolution's input gradient and weight
gradient each cost as much as its forward. Layer list = torch_reference's nets.
"""
from __future__ import annotations

ARCHS = {"dcgan32": (32, 3, (256, 128, 64)), "dcgan64": (64, 3, (512, 256, 128, 64))}
N_CRITIC = {"ns": 1, "hinge": 1, "wgan": 5, "wgan-gp": 5}


def layer_costs(arch: str, batch: int, zdim: int = 100) -> tuple[list[int], list[int]]:
    """Forward FLOPs of each generator and critic convolution, first layer first."""
    size, ch, widths = ARCHS[arch]
    gen, side, c_in = [], 1, zdim
    for i, c_out in enumerate((*widths, ch)):
        # ConvTranspose: every input position meets all k*k taps.
        gen.append(2 * batch * side * side * 16 * c_in * c_out)
        side, c_in = (4 if i == 0 else 2 * side), c_out
    crit, side, c_in = [], size, ch
    for c_out in widths[::-1]:
        side //= 2
        crit.append(2 * batch * side * side * 16 * c_in * c_out)
        c_in = c_out
    crit.append(2 * batch * 16 * c_in)  # 4x4 head, one output
    return gen, crit


def step_flops(arch: str, loss: str, batch: int) -> int:
    """FLOPs of one step (n_critic critic updates + one generator update) as torch_reference runs it.

    Critic update: G forward (no grad), D forward on real and fake, D backward without the input
    gradient of its first layer (the data needs none); WGAN-GP adds D forward on the interpolates,
    the input gradient through every layer (create_graph), and that gradient's backward: each
    layer's input-gradient op differentiated w.r.t. its kernel and its incoming gradient (the
    head's incoming gradient is a constant). Generator update: G and D forward, D backward with
    all input gradients and all weight gradients (torch computes D's too), G backward without its
    first layer's input gradient.
    """
    if loss not in N_CRITIC:
        raise ValueError(f"unknown loss {loss!r}; allowed: {sorted(N_CRITIC)}")
    gen, crit = layer_costs(arch, batch)
    fg, fd = sum(gen), sum(crit)
    critic = fg + 2 * fd + 2 * (2 * fd - crit[0])
    if loss == "wgan-gp":
        critic += fd + fd + (2 * fd - crit[-1])
    generator = fg + fd + 2 * fd + (2 * fg - gen[0])
    return N_CRITIC[loss] * critic + generator
