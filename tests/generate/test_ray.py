"""The Ray engine on a real local Ray (started once for the module): bytes, retries, resume."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from helpers import toy_family
from helpers.bars import CountingBar
from weightzoo import cli
from weightzoo.generate import progress
from weightzoo.generate.ray_engine import RayOptions
from weightzoo.generate.runner import generate
from weightzoo.generate.specs import get_spec
from weightzoo.storage import Manifest, ZooReader

ray = pytest.importorskip("ray")
TESTS = Path(__file__).resolve().parents[1]


def shard_hashes(path):
    return {s.file: s.sha256 for s in Manifest.load(path).shards}


def first_model_ids(path, reference):
    """The model id of each written block's first model (positions read from ``reference``)."""
    ids = np.asarray(ZooReader(reference, split="all").column("model_id"))
    return {int(ids[entry.models[0]]) for entry in Manifest.load(path).shards}


@pytest.fixture(scope="module")
def hook_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ray-hooks")


@pytest.fixture(scope="module", autouse=True)
def ray_session(hook_root):
    """One local Ray for the module; its workers inherit the environment set here."""
    if ray.is_initialized():
        pytest.skip("another Ray session is running in this process")
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "TOY_HOOK_DIR", "OMP_NUM_THREADS")}
    # Workers import the toy family and this checkout's weightzoo by module name.
    paths = [str(TESTS), str(TESTS.parent / "src"), os.environ.get("PYTHONPATH", "")]
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    os.environ["TOY_HOOK_DIR"] = str(hook_root)
    os.environ["OMP_NUM_THREADS"] = "1"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def hooks(hook_root) -> Path:
    """The toy family's hook directory, emptied for each test."""
    for path in hook_root.iterdir():
        path.unlink()
    return hook_root


def test_ray_writes_the_bytes_of_the_local_engine(tmp_path, toy_spec, toy_zoo, hooks):
    out = tmp_path / "ray"
    manifest = generate(toy_spec, out, engine="ray", progress=False)
    assert manifest.finished
    assert shard_hashes(out) == shard_hashes(toy_zoo)
    assert (out / "zoo.json").read_bytes() == (toy_zoo / "zoo.json").read_bytes()
    assert len(toy_family.started_blocks(hooks)) == len(manifest.shards)  # each block once
    threads = np.asarray(ZooReader(out, split="all").column("torch_threads"))
    assert set(threads.tolist()) == {1}


@pytest.mark.slow  # about a minute on 2 shared cores
def test_ray_trains_mlds_networks_to_the_same_bytes(tmp_path):
    spec = get_spec("mlds-ds1").override(models=6, epochs=2).replace(shard_models=3)
    generate(spec, tmp_path / "local", progress=False)
    generate(spec, tmp_path / "ray", engine="ray", progress=False)
    assert shard_hashes(tmp_path / "ray") == shard_hashes(tmp_path / "local")


def test_a_worker_killed_mid_block_is_retried_without_a_trace(
    tmp_path, toy_spec, toy_zoo, hooks, monkeypatch
):
    (hooks / "exit-4").touch()  # the block holding model 4 dies once, as if killed
    made = []
    monkeypatch.setattr(progress, "tqdm", lambda **kw: made.append(CountingBar(**kw)) or made[-1])
    out = tmp_path / "ray"
    generate(toy_spec, out, engine="ray", progress=True)
    started = toy_family.started_blocks(hooks)
    assert not (hooks / "exit-4").exists()
    blocks = Manifest.load(toy_zoo).shards
    assert len(started) == len(blocks) + 1  # one block twice: its retry
    assert shard_hashes(out) == shard_hashes(toy_zoo)
    ids = ZooReader(out, split="all").column("model_id")
    assert sorted(np.asarray(ids).tolist()) == list(range(12))  # nothing duplicated
    assert not list(out.rglob("*.tmp"))  # no partial shard anywhere
    assert made[0].n == made[0].total <= 12 * toy_spec.num_epochs  # passed models leave early
    assert made[0].highest <= made[0].total  # the retry restarted its block's count


def test_a_block_that_fails_for_good_stops_the_run_and_the_rerun_resumes(
    tmp_path, toy_spec, toy_zoo, hooks
):
    (hooks / "exit-4").touch()
    out = tmp_path / "ray"
    with pytest.raises(ray.exceptions.RayError):
        generate(toy_spec, out, engine="ray", progress=False, ray=RayOptions(max_retries=0))
    kept = first_model_ids(out, toy_zoo)
    assert not list(out.rglob("*.tmp"))
    before = len(toy_family.started_blocks(hooks))
    generate(toy_spec, out, engine="ray", progress=False)
    rerun = toy_family.started_blocks(hooks)[before:]
    everything = first_model_ids(toy_zoo, toy_zoo)
    assert sorted(rerun) == sorted(everything - kept)  # only what the first run lost
    assert shard_hashes(out) == shard_hashes(toy_zoo)


def test_ray_progress_arrives_while_the_blocks_still_train(
    tmp_path, toy_spec, toy_zoo, hooks, monkeypatch
):
    (hooks / "await").touch()  # blocks wait after their first epoch until the driver saw one
    out = tmp_path / "ray"
    seen = {}
    original = progress.ModelEpochBar.advance

    def advance(self, block, models, passed):
        if not seen:
            seen["shards"] = len(Manifest.load(out).shards)
            (hooks / "seen").touch()
        original(self, block, models, passed)

    monkeypatch.setattr(progress.ModelEpochBar, "advance", advance)
    generate(toy_spec, out, engine="ray", progress=False)
    assert seen == {"shards": 0}
    assert shard_hashes(out) == shard_hashes(toy_zoo)


def test_ray_slices_and_the_command_line(tmp_path, capsys, hooks):
    out = tmp_path / "zoo"
    for index in range(2):
        args = ["generate", "toy3", "--out", str(out), "--engine", "ray", "--slice", f"{index}/2"]
        assert cli.run(args) == 0
    assert cli.run(["merge", str(out)]) == 0
    whole = tmp_path / "whole"
    assert cli.run(["generate", "toy3", "--out", str(whole)]) == 0
    assert shard_hashes(out) == shard_hashes(whole)
    capsys.readouterr()


def test_ray_with_cuda_asks_for_gpus(tmp_path, toy_spec):
    from weightzoo.errors import InvalidOptionError

    with pytest.raises(InvalidOptionError, match="--gpus-per-block"):
        generate(toy_spec, tmp_path / "zoo", engine="ray", device="cuda", progress=False)


def test_ctrl_c_keeps_the_blocks_that_came_back_and_the_rerun_resumes(
    tmp_path, toy_spec, toy_zoo, hooks, monkeypatch
):
    out = tmp_path / "ray"
    original = progress.ModelEpochBar.finish
    finished = []

    def interrupt_after_two(self, block):
        original(self, block)
        finished.append(block)
        if len(finished) == 2:
            raise KeyboardInterrupt  # the user presses Ctrl-C while blocks still train

    monkeypatch.setattr(progress.ModelEpochBar, "finish", interrupt_after_two)
    with pytest.raises(KeyboardInterrupt):
        generate(toy_spec, out, engine="ray", progress=False)
    monkeypatch.setattr(progress.ModelEpochBar, "finish", original)
    kept = first_model_ids(out, toy_zoo)
    assert len(kept) >= 2 and not list(out.rglob("*.tmp"))
    before = len(toy_family.started_blocks(hooks))
    generate(toy_spec, out, engine="ray", progress=False)
    rerun = toy_family.started_blocks(hooks)[before:]
    assert sorted(rerun) == sorted(first_model_ids(toy_zoo, toy_zoo) - kept)
    assert shard_hashes(out) == shard_hashes(toy_zoo)
