"""gan_jax's FID InceptionV3 against pytorch-fid's own network: pytorch-fid's published `InceptionV3` (its
FIDInception blocks patched into torchvision's Inception3) with random weights, converted by
`gan_jax.metrics.convert_inception`, on the same images, pytorch-fid's resize to 299×299 included.

Needs the `reference` extra (torch, torchvision, pytorch-fid). Only torchvision's pure-Python model code runs:
a torchvision wheel built for another torch fails at import on its compiled ops (`torchvision::nms`), so the
package is imported without its `__init__` (`pytorch_fid_inception`), which Inception3 does not need.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import sys
import types
from typing import Iterator

import jax
import numpy as np
import pytest

from gan_jax.metrics import convert_inception, features
from tests.test_metrics_inception import random_state_dict

torch = pytest.importorskip("torch", reason="the reference check needs torch (pip install -e '.[reference]')")
for _dist in ("torchvision", "pytorch_fid"):
    if importlib.util.find_spec(_dist) is None:
        pytest.skip(f"the reference check needs {_dist} (pip install -e '.[reference]')", allow_module_level=True)


def _bare_package(name: str) -> types.ModuleType:
    """The installed package `name` as an empty module whose submodules import from its folder, its
    `__init__` not run."""
    spec = importlib.util.find_spec(name)
    module = types.ModuleType(name)
    module.__path__, module.__spec__ = list(spec.submodule_search_locations), spec
    sys.modules[name] = module
    return module


@contextlib.contextmanager
def _transient(*packages: str) -> Iterator[None]:
    """Afterwards, the modules of `packages` in sys.modules are those before, so no other test sees the bare
    ones."""
    def ours(name: str) -> bool:
        return name.split(".")[0] in packages
    before = {name: m for name, m in sys.modules.items() if ours(name)}
    try:
        yield
    finally:
        for name in [name for name in sys.modules if ours(name)]:
            del sys.modules[name]
        sys.modules.update(before)


def pytorch_fid_inception() -> types.ModuleType:
    """`pytorch_fid.inception` over torchvision's published `models/inception.py`, with the two names it
    reads from the torchvision package (`__version__`, `models.inception_v3`) set as the package sets them."""
    with _transient("torchvision", "pytorch_fid"):
        torchvision = _bare_package("torchvision")
        torchvision.__version__ = importlib.metadata.version("torchvision")
        torchvision.models = _bare_package("torchvision.models")
        torchvision.models.inception_v3 = importlib.import_module("torchvision.models.inception").inception_v3
        return importlib.import_module("pytorch_fid.inception")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(pytorch-fid's InceptionV3([3], resize_input, normalize_input, use_fid_inception), the fc layer of the FID
    Inception3 it is built from (the wrapper leaves fc out), gan_jax's network from a .pth of that Inception3's
    state dict converted by `convert_inception`)."""
    module = pytorch_fid_inception()
    state = {k: torch.from_numpy(v) for k, v in random_state_dict(np.random.default_rng(0)).items()}
    build, built = module.fid_inception_v3, []

    def recorded_build():  # keeps the FID Inception3 the wrapper takes its blocks from
        built.append(build())
        return built[-1]
    with pytest.MonkeyPatch.context() as mp:  # the published code would download the real weights here
        mp.setattr(module, "load_state_dict_from_url", lambda url, progress=True: state)
        mp.setattr(module, "fid_inception_v3", recorded_build)
        pool_net = module.InceptionV3([3], resize_input=True, normalize_input=True, use_fid_inception=True).eval()
    full_net = built[0].eval()
    folder = tmp_path_factory.mktemp("reference")
    torch.save(full_net.state_dict(), folder / "pt_inception.pth")
    assert convert_inception.main([str(folder / "pt_inception.pth"), str(folder / "pt_inception.npz")]) == 0
    return pool_net, full_net.fc, features.inception_v3_features(str(folder / "pt_inception.npz"))


@pytest.mark.parametrize("shape", [(2, 1, 32, 32), (2, 3, 64, 64)], ids=["32x32_grey", "64x64_rgb"])
def test_pool3_and_logits_equal_pytorch_fids(reference, shape):
    """pytorch-fid takes RGB in [0, 1] (grey read as RGB) and resizes to 299×299 itself; gan_jax takes [−1, 1],
    grey as 1 channel. Logits: Inception3's fc of pool3 (its avgpool → dropout (eval: identity) → flatten →
    fc). Tolerance: absolute 1e-4 on outputs up to ~10 (mean ~1); measured 4e-6 (pool3) and 2e-6 (logits),
    float32 rounding over 94 conv layers. No relative bound: pool3 has entries near 0."""
    pool_net, fc, network = reference
    unit = np.random.default_rng(shape[1]).uniform(0, 1, size=shape).astype(np.float32)
    with torch.no_grad():
        pool3 = pool_net(torch.from_numpy(unit).expand(-1, 3, -1, -1))[0].flatten(1)
        logits = fc(pool3).numpy()
    pool3 = pool3.numpy()
    got_pool3, got_logits = features.extract(network, 2 * unit.transpose(0, 2, 3, 1) - 1, batch_size=shape[0],
                                             devices=jax.local_devices()[:1])
    np.testing.assert_allclose(got_pool3, pool3, rtol=0, atol=1e-4)
    np.testing.assert_allclose(got_logits, logits, rtol=0, atol=1e-4)
    assert np.abs(pool3[0] - pool3[1]).max() > 0.1 and np.abs(logits[0] - logits[1]).max() > 0.01  # far apart
