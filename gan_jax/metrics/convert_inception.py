"""Convert pytorch-fid's FID Inception weights (a PyTorch state dict) to the .npz gan_jax loads.

    python -m gan_jax.metrics.convert_inception pt_inception-2015-12-05-6726825d.pth pt_inception-2015-12-05.npz

The input is pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (`features.FID_WEIGHTS_URL`); reading
it needs torch, which gan_jax itself never imports. The .npz keeps the state dict's names and PyTorch
layouts; it is checked against the FID InceptionV3's names and shapes before it is written. Use it with
`--config.eval.features=inception --config.eval.inception_weights=pt_inception-2015-12-05.npz`.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Sequence

import numpy as np


def state_dict_arrays(state_dict: Any, source: str) -> dict[str, np.ndarray]:
    """{name: numpy array} of a PyTorch state dict of tensors (what `torch.load` returns for the .pth)."""
    if not isinstance(state_dict, dict) or not all(hasattr(v, "numpy") for v in state_dict.values()):
        raise ValueError(f"{source} does not hold a state dict of tensors (got {type(state_dict).__name__})")
    return {k: v.detach().cpu().numpy() for k, v in state_dict.items()}


def convert(pth_path: str, npz_path: str) -> int:
    """Write the FID InceptionV3 weights of `pth_path` to `npz_path` (exactly that path); returns the number of
    arrays. Refuses, writing nothing, a file that is not the FID InceptionV3's state dict."""
    try:
        import torch
    except ImportError:
        raise ValueError("reading the .pth needs torch: pip install torch (or pip install -e '.[reference]')") \
            from None
    from gan_jax.metrics import features
    if not os.path.exists(pth_path):
        raise FileNotFoundError(f"no file {pth_path!r}; {features.WEIGHTS_HELP}")
    try:
        state_dict = torch.load(pth_path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises pickle, zip and runtime errors for a file that is no state dict
        first_line = (str(e).splitlines() or [""])[0]
        raise ValueError(f"torch.load cannot read {pth_path} as a state dict: {type(e).__name__}: {first_line}") \
            from e
    arrays = state_dict_arrays(state_dict, pth_path)
    features.checked_inception_variables(arrays, pth_path)
    with open(npz_path, "wb") as f:
        np.savez(f, **arrays)
    return len(arrays)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gan_jax.metrics.convert_inception",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("pth", help="pytorch-fid's pt_inception-2015-12-05-6726825d.pth")
    p.add_argument("npz", help="the .npz to write (config.eval.inception_weights)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show the traceback of user errors too (also: GAN_JAX_VERBOSE=1)")
    args = p.parse_args(argv)
    from gan_jax.errors import call_reporting_user_errors
    ok, count = call_reporting_user_errors(lambda: convert(args.pth, args.npz), args.verbose)
    if not ok:
        return 2
    print(f"wrote the {count} arrays of the FID InceptionV3 to {args.npz}; use it with "
          f"--config.eval.features=inception --config.eval.inception_weights={args.npz}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
