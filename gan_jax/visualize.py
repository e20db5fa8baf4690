"""Pictures of a run: scatter plots of 2-D samples over the data's modes, and image grids."""
from __future__ import annotations

import io

import numpy as np


def scatter_png(samples: np.ndarray, means: np.ndarray, title: str = "") -> np.ndarray:
    """Samples (blue) over the mode centres (red) as an HWC uint8 image."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    ax.scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.4, label="samples")
    ax.scatter(means[:, 0], means[:, 1], s=20, c="red", marker="x", label="modes")
    lim = 1.3 * np.abs(means).max()
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", title=title)
    ax.legend(loc="upper right", fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    from PIL import Image
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def image_grid(images: np.ndarray, ncols: int, pad: int = 1) -> np.ndarray:
    """Images [N, H, W, C] in [−1, 1] → one uint8 grid [rows·(H+pad), ncols·(W+pad), 3]."""
    n, h, w, c = images.shape
    rows = -(-n // ncols)
    x = np.clip((np.asarray(images, np.float32) + 1) * 127.5, 0, 255).astype(np.uint8)
    if c == 1:
        x = np.repeat(x, 3, axis=-1)
    grid = np.full((rows * (h + pad) + pad, ncols * (w + pad) + pad, 3), 255, np.uint8)
    for i in range(n):
        r, q = divmod(i, ncols)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = x[i]
    return grid


def save_png(image: np.ndarray, path: str) -> None:
    from PIL import Image
    Image.fromarray(image).save(path)
