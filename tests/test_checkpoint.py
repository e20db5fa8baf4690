"""Checkpoints: bit-exact round trips, manifests that catch damaged files, fallback to the newest usable step,
cleanup of unfinished saves, at least two steps kept, and a full disk that leaves the earlier steps intact."""
import errno
import glob
import json
import os
import re
import shutil
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gan_jax import checkpoint, config as config_lib, errors
from gan_jax.state import TrainState

N = 50_000   # floats in the largest array: a data file of ~200 KB, room for a 4 KiB block in its middle


def _config(**overrides):
    c = config_lib.base_config()
    c.steps = 100
    for k, v in overrides.items():
        c[k] = v
    return c


def _state(step: int, n: int = N) -> dict:
    """Incompressible values that differ from step to step."""
    rng = np.random.default_rng(step)
    return {"w": jnp.asarray(rng.standard_normal(n, dtype=np.float32)),
            "b": jnp.asarray(rng.standard_normal((3, 4), dtype=np.float32)), "step": jnp.int32(step)}


def _bits(tree) -> list[tuple[str, tuple, bytes]]:
    """Each leaf's dtype, shape and bytes (PRNG keys: their key data)."""
    leaves = [jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x
              for x in jax.tree.leaves(tree)]
    return [(str(x.dtype), x.shape, np.asarray(x).tobytes()) for x in leaves]


def _assert_same(restored, expected) -> None:
    assert jax.tree.structure(restored) == jax.tree.structure(expected)
    assert _bits(restored) == _bits(expected)


def _save(workdir, steps=(10, 20, 30), **overrides) -> None:
    ck = checkpoint.Checkpointer(str(workdir), _config(**overrides))
    for step in steps:
        ck.save(step, _state(step))
    ck.close()


def _restore(workdir, **overrides):
    """(latest step after the restore, restored state), calling check_config first as the training loop does."""
    ck = checkpoint.Checkpointer(str(workdir), _config(**overrides))
    try:
        ck.check_config()
        state = ck.restore(_state(0))
        return ck.latest_step(), state
    finally:
        ck.close()


def _files(workdir, step: int) -> list[str]:
    return [p for p in glob.glob(os.path.join(workdir, "checkpoints", str(step), "**"), recursive=True)
            if os.path.isfile(p)]


def _largest(workdir, step: int) -> str:
    return max(_files(workdir, step), key=os.path.getsize)


def _flip_block(path: str) -> None:
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(size // 2 - 2048)
        block = f.read(4096)
        f.seek(size // 2 - 2048)
        f.write(bytes(b ^ 0xFF for b in block))


def _delete_metadata(path: str) -> None:
    """Delete the `_METADATA` (the tree of the saved state) of the step holding `path`."""
    step_dir = path.split("/state/")[0]
    os.remove(os.path.join(step_dir, "state", "_METADATA"))


def _truncate(path: str) -> None:
    os.truncate(path, os.path.getsize(path) // 2)


def _damage_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("checkpoint step")]


def test_a_train_state_round_trips_bit_for_bit_with_a_manifest_of_every_file(tmp_path):
    tx = optax.adam(1e-3)
    params = {"w": jnp.asarray(np.random.default_rng(0).standard_normal((4, 3), dtype=np.float32)), "b": jnp.ones(3)}
    state = {"net": TrainState.create({"params": params}, tx, ema=True), "key": jax.random.key(7),
             "step": jnp.int32(5)}
    state["net"] = state["net"].apply_gradients(tx, jax.tree.map(jnp.ones_like, params))
    ck = checkpoint.Checkpointer(str(tmp_path), _config())
    ck.save(5, state)
    ck.close()
    ck = checkpoint.Checkpointer(str(tmp_path), _config())
    _assert_same(ck.restore(jax.eval_shape(lambda: state)), state)
    ck.close()
    folder = os.path.join(tmp_path, "checkpoints", "5")
    with open(os.path.join(folder, checkpoint.MANIFEST)) as f:
        manifest = json.load(f)["files"]
    on_disk = {os.path.relpath(p, folder) for p in _files(tmp_path, 5)} - {checkpoint.MANIFEST}
    assert set(manifest) == on_disk and "state/_METADATA" in manifest
    for name, entry in manifest.items():
        assert entry["size"] == os.path.getsize(os.path.join(folder, name))
        assert entry["sha256"] == checkpoint._sha256(os.path.join(folder, name))


@pytest.mark.parametrize("damage, problem", [
    (_flip_block, r"checkpoints/30/state/ocdbt\.process_0/d/\w+: SHA-256 mismatch"),
    (_delete_metadata, r"checkpoints/30/state/_METADATA: missing"),
    (_truncate, r"checkpoints/30/state/ocdbt\.process_0/d/\w+: \d+ bytes, \d+ expected"),
], ids=["flipped_block", "deleted_metadata", "truncated_file"])
def test_a_damaged_latest_step_is_set_aside_and_the_previous_one_restored(tmp_path, capsys, damage, problem):
    _save(tmp_path)
    damage(_largest(tmp_path, 30))
    capsys.readouterr()
    step, state = _restore(tmp_path)
    assert step == 20
    _assert_same(state, _state(20))
    lines = _damage_lines(capsys)
    assert len(lines) == 1, lines
    assert re.fullmatch(rf"checkpoint step 30 in {re.escape(str(tmp_path))} is damaged \({problem}\); moved to "
                        r"checkpoints\.damaged/30; falling back to step 20", lines[0]), lines[0]
    assert sorted(os.listdir(tmp_path / "checkpoints.damaged")) == ["30"]
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["10", "20"]
    # The run goes on: step 30 is saved again, and a second damaged step 30 is set aside beside the first.
    ck = checkpoint.Checkpointer(str(tmp_path), _config())
    ck.save(30, _state(31))
    ck.close()
    damage(_largest(tmp_path, 30))
    assert _restore(tmp_path)[0] == 20
    assert sorted(os.listdir(tmp_path / "checkpoints.damaged")) == ["30", "30-2"]


def test_a_step_without_manifest_that_orbax_cannot_read_falls_back(tmp_path, capsys):
    _save(tmp_path)
    for step in (10, 20, 30):   # as saved before manifests existed
        os.remove(os.path.join(tmp_path, "checkpoints", str(step), checkpoint.MANIFEST))
    _truncate(_largest(tmp_path, 30))
    capsys.readouterr()
    step, state = _restore(tmp_path)
    assert step == 20
    _assert_same(state, _state(20))
    lines = _damage_lines(capsys)
    assert len(lines) == 1 and "is damaged (orbax cannot read it: ValueError: OUT_OF_RANGE" in lines[0], lines
    assert os.listdir(tmp_path / "checkpoints.damaged") == ["30"]


def test_every_step_damaged_is_an_error_naming_them_and_moves_nothing(tmp_path):
    _save(tmp_path)
    for step in (10, 20, 30):
        _flip_block(_largest(tmp_path, step))
    with pytest.raises(ValueError, match=rf"{re.escape(str(tmp_path))} holds no usable checkpoint: step 30 \(.*SHA-256 "
                                         r"mismatch\); step 20 \(.*\); step 10 \(.*\)\. Nothing was moved") as e:
        _restore(tmp_path)
    assert "\n" not in str(e.value)
    assert errors.user_message(e.value) == str(e.value)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["10", "20", "30"]
    assert not os.path.exists(tmp_path / "checkpoints.damaged")


def test_a_leftover_unfinished_save_is_ignored_and_removed_by_the_next_save(tmp_path):
    _save(tmp_path, steps=(10, 20))
    leftover = tmp_path / "checkpoints" / f"30{checkpoint.TMP_SUFFIX}-1700000000"
    shutil.copytree(tmp_path / "checkpoints" / "20", leftover)
    _truncate(_largest(tmp_path, 20).replace("/checkpoints/20/", f"/checkpoints/{leftover.name}/"))
    ck = checkpoint.Checkpointer(str(tmp_path), _config())
    assert ck.latest_step() == 20
    _assert_same(ck.restore(_state(0)), _state(20))
    assert leftover.exists()   # a reader never deletes: the save may still be running in another process
    ck.save(30, _state(30))
    assert not leftover.exists()
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["10", "20", "30"]
    ck.close()


def test_keep_checkpoints_1_still_keeps_two_steps(tmp_path):
    _save(tmp_path, keep_checkpoints=1)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["20", "30"]


def test_a_save_failing_on_a_full_disk_raises_enospc_and_keeps_the_earlier_step(tmp_path):
    ck = checkpoint.Checkpointer(str(tmp_path), _config())
    ck.save(10, _state(10))

    def full(*args, **kwargs):   # what orbax raises when TensorStore hits a full disk, wrapped once more
        try:
            raise ValueError('RESOURCE_EXHAUSTED: Error writing "w/0" in OCDBT database: Failed to write 696586 '
                             "bytes to file 14: No space left on device [os_error_code='28']")
        except ValueError as e:
            raise Exception("Encountered error while writing array") from e

    ck._manager.save = full
    with pytest.raises(OSError) as e:
        ck.save(20, _state(20))
    assert e.value.errno == errno.ENOSPC
    assert errors.user_message(e.value).startswith("the disk is full (")
    ck.close()
    assert _restore(tmp_path)[0] == 10


def test_a_manifest_that_cannot_be_written_leaves_a_complete_step_restored_without_verification(tmp_path,
                                                                                               monkeypatch):
    ck = checkpoint.Checkpointer(str(tmp_path), _config())
    ck.save(10, _state(10))

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)   # the manifest's fsync: orbax's save is done by then
    with pytest.raises(OSError) as e:
        ck.save(20, _state(20))
    monkeypatch.undo()
    ck.close()
    assert e.value.errno == errno.ENOSPC
    assert sorted(os.listdir(tmp_path / "checkpoints" / "20")) == ["_CHECKPOINT_METADATA", "commit_success.txt",
                                                                     "config", "state"]
    step, state = _restore(tmp_path)
    assert step == 20
    _assert_same(state, _state(20))


def test_a_real_full_disk_keeps_the_earlier_step(tmp_path):
    """A save into a tmpfs too small for a second step: TensorStore's own ENOSPC, found inside orbax's error."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(disk)], capture_output=True,
                             text=True, check=False)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or mounted.returncode}); the simulated full "
                    "disk test covers the error handling")
    try:
        ck = checkpoint.Checkpointer(str(disk), _config())
        ck.save(10, _state(10, n=100_000))   # ~400 KB
        with pytest.raises(OSError) as e:
            ck.save(20, _state(20, n=100_000))
        assert e.value.errno == errno.ENOSPC and e.value.filename == str(disk / "checkpoints")
        assert ck.latest_step() == 10
        ck.close()
        ck = checkpoint.Checkpointer(str(disk), _config())
        _assert_same(ck.restore(_state(0, n=100_000)), _state(10, n=100_000))
        ck.close()
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)

