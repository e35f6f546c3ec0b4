"""Generating across machines without Ray: slices of a zoo and their merge, worker progress."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import toy_family
from helpers.bars import CountingBar
from weightzoo import cli
from weightzoo.errors import (
    InvalidOptionError,
    ManifestError,
    MissingExtraError,
    ShardCorruptError,
    SliceMissingError,
    SpecMismatchError,
    ZooLockedError,
    ZooNotFoundError,
)
from weightzoo.generate import progress
from weightzoo.generate.runner import generate, plan_blocks, slice_blocks
from weightzoo.storage import Manifest, ZooReader
from weightzoo.storage.manifest import MANIFEST_NAME, slice_manifest_name
from weightzoo.storage.merge import merge_slices
from weightzoo.storage.writer import ZooWriter


def shard_hashes(path):
    return {s.file: s.sha256 for s in Manifest.load(path).shards}


def generate_slices(spec, out, count, indices=None):
    for index in range(count) if indices is None else indices:
        generate(spec, out, progress=False, slice=(index, count))


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7])
def test_slices_split_the_blocks_round_robin_disjoint_and_complete(toy_spec, count):
    blocks = plan_blocks(toy_family.ToyFamily().plan(toy_spec), toy_spec)
    parts = [slice_blocks(blocks, i, count) for i in range(count)]
    firsts = sorted(b.first for part in parts for b in part)
    assert firsts == [b.first for b in blocks]  # every block once
    assert [b.first for b in parts[0]] == [b.first for b in blocks[::count]]
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


@pytest.mark.parametrize("index", [-1, 3])
def test_a_slice_index_out_of_range_is_refused(toy_spec, tmp_path, index):
    with pytest.raises(InvalidOptionError, match="numbered from 0"):
        generate(toy_spec, tmp_path / "zoo", progress=False, slice=(index, 3))
    assert not (tmp_path / "zoo").exists()


@pytest.mark.parametrize("count", [2, 3, 5])
def test_slices_then_merge_make_the_whole_zoo_byte_for_byte(tmp_path, toy_spec, toy_zoo, count):
    out = tmp_path / "sliced"
    generate_slices(toy_spec, out, count)
    assert not (out / MANIFEST_NAME).exists()
    slice_models = [
        sum(s.num_models for s in Manifest.load(out, file=slice_manifest_name(i, count)).shards)
        for i in range(count)
    ]
    assert sum(slice_models) == 12
    merged = merge_slices(out)
    assert merged.finished and merged.complete
    assert shard_hashes(out) == shard_hashes(toy_zoo)
    # The merged manifest is the file a single run writes, byte for byte.
    assert (out / MANIFEST_NAME).read_bytes() == (toy_zoo / MANIFEST_NAME).read_bytes()
    assert sorted(p.name for p in out.iterdir()) == [".lock", "shards", MANIFEST_NAME]
    np.testing.assert_array_equal(
        ZooReader(out, split="all").read("weights", [0, 11], [3, 3]),
        ZooReader(toy_zoo, split="all").read("weights", [0, 11], [3, 3]),
    )


def test_slices_write_one_directory_at_the_same_time_but_never_twice(tmp_path, toy_spec):
    out = tmp_path / "zoo"
    spec = toy_spec.to_dict()

    def writer(**kwargs):
        return ZooWriter(
            out,
            name="toy",
            family="toy",
            spec=spec,
            layout=toy_family.ToyFamily().layout(toy_spec),
            epochs=[0, 1],
            metrics=[],
            stats_names=[],
            num_models=12,
            **kwargs,
        )

    first, second = writer(slice=(0, 2)), writer(slice=(1, 2))
    stray = out / "shards" / "train-000000-c000.h5.slice-1-of-2.999-abcd.tmp"
    stray.write_bytes(b"another slice's shard being written")
    with pytest.raises(ZooLockedError, match="slice-0-of-2"):
        writer(slice=(0, 2))  # the same slice twice (a requeued job while the first runs)
    with pytest.raises(ZooLockedError, match="slices"):
        writer()  # a whole-zoo run while slices run
    with pytest.raises(ZooLockedError, match="slices"):
        merge_slices(out)
    first.close()
    again = writer(slice=(0, 2))  # a slice cleans up only its own leftovers
    assert stray.exists()
    for w in (again, second):
        w.close()
    with pytest.raises(ManifestError, match="merge"):
        writer()  # slices are done: a whole-zoo run on their directory is still a mistake
    with pytest.raises(ManifestError, match="another count"):
        writer(slice=(0, 3))


def test_a_slice_refuses_a_directory_with_a_whole_zoo(toy_zoo, toy_spec):
    with pytest.raises(ManifestError, match="whole-zoo"):
        generate(toy_spec, toy_zoo, progress=False, slice=(0, 2))


def test_merge_names_the_missing_slice_and_how_to_run_it(tmp_path, toy_spec):
    out = tmp_path / "zoo"
    generate_slices(toy_spec, out, 3, indices=[0, 2])
    with pytest.raises(SliceMissingError, match=r"slice\(s\) 1/3 missing.*--slice 1/3"):
        merge_slices(out)
    assert not (out / MANIFEST_NAME).exists()
    generate_slices(toy_spec, out, 3, indices=[1])
    assert merge_slices(out).complete


def test_merge_refuses_an_unfinished_slice_and_the_slice_resumes(tmp_path, toy_spec, monkeypatch):
    out = tmp_path / "zoo"
    generate_slices(toy_spec, out, 2, indices=[1])
    original = toy_family.ToyFamily.train
    calls = {"n": 0}

    def crash_on_second(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(toy_family.ToyFamily, "train", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        generate(toy_spec, out, progress=False, slice=(0, 2))
    with pytest.raises(SliceMissingError, match=r"slice 0/2 .* not finished.*--slice 0/2"):
        merge_slices(out)
    monkeypatch.setattr(toy_family.ToyFamily, "train", original)
    toy_family.CALLS.clear()
    generate(toy_spec, out, progress=False, slice=(0, 2))
    assert toy_family.CALLS == [2, 2]  # blocks 2 and 4 of 0..4 (sizes 3, 3, 2, 2, 2)
    assert merge_slices(out).complete


def test_merge_refuses_slices_of_another_spec(tmp_path, toy_spec):
    out = tmp_path / "zoo"
    generate_slices(toy_spec, out, 2, indices=[0])
    generate_slices(toy_spec.replace(width=6), out, 2, indices=[1])
    with pytest.raises(SpecMismatchError, match="width"):
        merge_slices(out)


def test_merge_recomputes_every_hash(tmp_path, toy_spec):
    out = tmp_path / "zoo"
    generate_slices(toy_spec, out, 2)
    victim = out / Manifest.load(out, file=slice_manifest_name(1, 2)).shards[0].file
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF  # same size: only the hash can tell
    victim.write_bytes(bytes(data))
    with pytest.raises(ShardCorruptError, match="sha256"):
        merge_slices(out)
    assert not (out / MANIFEST_NAME).exists()


def test_reading_a_directory_of_slices_points_to_merge(tmp_path, toy_spec):
    out = tmp_path / "zoo"
    generate_slices(toy_spec, out, 2, indices=[0])
    with pytest.raises(ZooNotFoundError, match="weightzoo merge"):
        Manifest.load(out)


def test_merge_without_slices_says_what_to_run(tmp_path, toy_zoo):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SliceMissingError, match="--slice I/N"):
        merge_slices(tmp_path / "empty")
    with pytest.raises(ManifestError, match="Nothing to merge"):
        merge_slices(toy_zoo)


def test_command_line_slices_and_merge(tmp_path, capsys):
    out = tmp_path / "zoo"
    for index in range(2):
        assert cli.run(["generate", "toy3", "--out", str(out), "--slice", f"{index}/2"]) == 0
    assert "weightzoo merge" in capsys.readouterr().out
    assert cli.run(["merge", str(out)]) == 0
    assert "12 models" in capsys.readouterr().out
    assert Manifest.load(out).finished
    assert cli.run(["merge", str(out)]) == cli.EXIT_ERROR
    assert "Nothing to merge" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["2/2", "x/2", "1", "3/2", "0/0"])
def test_command_line_refuses_a_malformed_slice(text, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.run(["generate", "toy3", "--slice", text])
    assert exit_info.value.code == cli.EXIT_USAGE
    assert "--slice takes I/N" in capsys.readouterr().err


def test_ray_options_without_the_ray_engine_are_refused(tmp_path, capsys):
    code = cli.run(["generate", "toy3", "--out", str(tmp_path / "z"), "--gpus-per-block", "1"])
    assert code == cli.EXIT_ERROR and "need --engine ray" in capsys.readouterr().err


def test_workers_belong_to_the_local_engine(tmp_path, capsys):
    args = ["generate", "toy3", "--out", str(tmp_path / "z"), "--engine", "ray", "--workers", "2"]
    assert cli.run(args) == cli.EXIT_ERROR
    assert "--cpus-per-block" in capsys.readouterr().err
    assert not (tmp_path / "z").exists()


def test_the_ray_engine_without_ray_says_how_to_install_it(tmp_path, toy_spec, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'weightzoo\[ray\]'"):
        generate(toy_spec, tmp_path / "zoo", progress=False, engine="ray")
    assert not (tmp_path / "zoo").exists()  # refused before anything was written


def test_an_unknown_engine_is_refused(tmp_path, toy_spec):
    with pytest.raises(InvalidOptionError, match="local, ray"):
        generate(toy_spec, tmp_path / "zoo", progress=False, engine="dask")


# -- progress across processes -----------------------------------------------------------


def test_a_restarted_block_counts_again_from_zero():
    bar = progress.ModelEpochBar(12, bar_factory=CountingBar)
    bar.plan(0, 6)
    bar.plan(6, 6)
    bar.advance(6, 3, None)
    bar.advance(0, 3, 1)
    bar.restart(0)  # its worker died: the retry reports every epoch again
    assert (bar._bar.n, bar.passed) == (3, 0)
    for _ in range(2):
        bar.advance(0, 3, 2)
    bar.finish(0)
    bar.finish(6)  # block 6 reported 3 model-epochs of 6: the other 3 leave the total
    assert bar._bar.n == bar._bar.highest == bar._bar.total == 9 and bar.passed == 2


@pytest.fixture
def hooks(tmp_path, monkeypatch) -> Path:
    """The toy family's file hooks (inherited by the worker processes)."""
    path = tmp_path / "hooks"
    path.mkdir()
    monkeypatch.setenv("TOY_HOOK_DIR", str(path))
    return path


def record_first_report(monkeypatch, hooks: Path, out: Path) -> dict:
    """Patch the bar: on the first report, note the shards on disk, then release the blocks."""
    seen: dict = {}
    original = progress.ModelEpochBar.advance

    def advance(self, block, models, passed):
        if not seen:
            manifest = next(out.glob("zoo*.json"))
            seen["shards_written"] = len(json.loads(manifest.read_text())["shards"])
            seen["block"] = block
            (hooks / "seen").touch()
        original(self, block, models, passed)

    monkeypatch.setattr(progress.ModelEpochBar, "advance", advance)
    return seen


def test_worker_progress_arrives_while_the_blocks_still_train(
    tmp_path, toy_spec, hooks, monkeypatch, toy_zoo
):
    (hooks / "await").touch()  # every block waits after its first epoch for the parent to see it
    out = tmp_path / "zoo"
    seen = record_first_report(monkeypatch, hooks, out)
    generate(toy_spec, out, workers=2, progress=False)
    assert seen["shards_written"] == 0  # the first report came before any block was written
    assert shard_hashes(out) == shard_hashes(toy_zoo)


@pytest.mark.parametrize("removed", [0, 1])
def test_a_merge_stopped_after_its_manifest_is_finished_by_merging_again(
    tmp_path, toy_spec, monkeypatch, removed
):
    """A merge killed between writing zoo.json and removing the slices resumes on rerun."""
    from weightzoo.storage import merge

    out = tmp_path / "sliced"
    generate_slices(toy_spec, out, 2)
    slices = sorted(p.name for p in out.glob("zoo.slice-*.json"))
    stop = RuntimeError("killed")

    def killed(zoo_dir, found):
        for file in slices[:removed]:  # killed part-way through the clean-up, or before it
            (zoo_dir / file).unlink()
        raise stop

    monkeypatch.setattr(merge, "_remove_slices", killed)
    with pytest.raises(RuntimeError, match="killed"):
        merge_slices(out)
    monkeypatch.undo()
    with pytest.raises(ManifestError, match="merge"):
        generate(toy_spec, out, progress=False)  # generate still points at merge
    merged = merge_slices(out)
    assert merged.finished and merged.complete
    assert sorted(p.name for p in out.iterdir()) == [".lock", "shards", MANIFEST_NAME]
    assert ZooReader(out, split="all").num_models == 12


def test_a_merged_manifest_beside_slices_of_another_zoo_is_refused(tmp_path, toy_spec):
    out = tmp_path / "sliced"
    generate_slices(toy_spec, out, 2)
    merge_slices(out)
    other = toy_spec.replace(num_models=9)
    generate(other, tmp_path / "other", progress=False, slice=(0, 2))
    stray = slice_manifest_name(0, 2)
    (out / stray).write_bytes((tmp_path / "other" / stray).read_bytes())
    with pytest.raises(ManifestError, match="already holds"):
        merge_slices(out)
