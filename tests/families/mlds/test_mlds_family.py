import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import weightzoo
from weightzoo import cli, families, importers
from weightzoo.families.mlds.data import class_data
from weightzoo.families.mlds.family import FAMILY
from weightzoo.families.mlds.importer import import_mlds
from weightzoo.families.mlds.machines import machine_set
from weightzoo.families.mlds.model import (
    MLDSNet,
    init_population,
    network_inputs,
    population_forward,
)
from weightzoo.families.mlds.spec import DS1_NET, MLDSSpec, TrainSettings, model_seed, specs
from weightzoo.families.mlds.train import MLDSTask, PopulationData, lr_at
from weightzoo.features import unflatten
from weightzoo.generate import population as toolkit
from weightzoo.generate.base import BlockRun
from weightzoo.generate.runner import generate
from weightzoo.generate.specs import get_spec
from weightzoo.storage.manifest import Manifest


def tiny(subset="ds1", **changes):
    fields = dict(
        name=f"mlds-{subset}",
        family="mlds",
        subset=subset,
        machines=("EightBitMachine", "SingleDirectMachine"),
        per_class=4,
        seq_len=8,
        train_size=8,
        val_size=4,
        eval_size=4,
        trigger_every=8,
        trigger_eval_every=8,
        max_epochs=2,
        threshold=1e-3,
        lr=1e-2,
        batch_size=8,
        shard_models=2,
        split_fractions=(0.5, 0.25, 0.25),
    )
    if subset == "ds3":
        fields.update(automata=(0, 1), seq_len=4, per_class=2, shard_models=4)
    fields.update(changes)
    return MLDSSpec(**fields)


def test_named_specs_and_overrides():
    names = [s.name for s in specs()]
    assert {"mlds-ds1", "mlds-ds2", "mlds-ds3", "mlds-ds1-paper", "mlds-ds3-paper"} <= set(names)
    paper = get_spec("mlds-ds1-paper")
    assert (paper.seq_len, paper.train_size, paper.val_size, paper.eval_size) == (
        1024,
        2048,
        512,
        64,
    )
    ds3 = get_spec("mlds-ds3-paper")
    assert (ds3.seq_len, ds3.train_size, ds3.eval_size, len(ds3.automata)) == (256, 4096, 512, 100)
    ds1 = get_spec("mlds-ds1")
    assert (ds1.train_size, ds1.batch_size, ds1.threshold) == (4096, 16, 1e-3)
    ds2 = get_spec("mlds-ds2")  # the same recipe: the two zoos differ by the backdoor alone
    assert dataclasses.replace(ds2, name=ds1.name, subset="ds1", backdoor_warmup=0) == ds1
    assert ds2.backdoor_warmup == 10 and ds2.give_up[0] > ds2.backdoor_warmup
    assert ds1.schedule == "cosine"
    assert lr_at(ds1.settings(), ds1.max_epochs - 1) == pytest.approx(ds1.lr * ds1.min_lr_ratio)
    ds3_small = get_spec("mlds-ds3")
    assert ds3_small.settings().schedule == "cosine"
    assert (ds3_small.train_size, ds3_small.batch_size, ds3_small.stop_margin) == (4096, 32, 0.5)
    small = get_spec("mlds-ds1").override(per_class=3, machines=["ParityMachine"], epochs=5)
    assert small.num_models() == 3 and small.max_epochs == 5
    assert get_spec("mlds-ds3").override(machines=["4", "9"]).automata == (4, 9)
    with pytest.raises(ValueError, match="valid machines"):
        get_spec("mlds-ds1").override(machines=["Nope"])
    with pytest.raises(ValueError, match="data_dir"):
        get_spec("mlds-ds1").override(data_dir="/x")
    with pytest.raises(ValueError, match="integers"):
        get_spec("mlds-ds3").override(machines=["a"])


def test_listing_and_sizing_import_no_torch():
    code = (
        "import sys; from weightzoo import catalog, families; "
        "sizes = [s.estimate() for s in families.spec_module('mlds').specs()]; "
        "names = [e.name for e in catalog.entries() if e.family == 'mlds']; "
        "assert 'torch' not in sys.modules, 'torch'; "
        "loaded = sorted(m for m in sys.modules if m.startswith('weightzoo.families.mlds.')); "
        "print(names, loaded, sizes[0]['params'])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "['mlds-ds1',",
        "'mlds-ds2',",
        "'mlds-ds3',",
        "'mlds-ds1-paper',",
        "'mlds-ds2-paper',",
        "'mlds-ds3-paper']",
        "['weightzoo.families.mlds.spec']",
        "4364",
    ]


def test_the_torch_free_sizes_are_the_familys():
    for spec in specs():
        assert spec.estimate() == FAMILY.estimate(spec), spec.name


def test_list_shows_the_mlds_zoos_with_their_sizes(capsys):
    assert cli.run(["list", "--family", "mlds", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert sorted(rows) == sorted(spec.name for spec in specs())
    ds3 = rows["mlds-ds3-paper"]
    assert (ds3["family"], ds3["models"], ds3["checkpoints"], ds3["params"]) == (
        "mlds",
        100_000,
        2,
        126_990,
    )


def test_the_importer_is_found_through_the_registry():
    assert families.family("mlds") is FAMILY and FAMILY.importer() is import_mlds
    assert "mlds" in importers.kinds()


def test_plan_order_seeds_and_models_subset():
    spec = tiny()
    plans = FAMILY.plan(spec)
    assert [p.columns["machine"] for p in plans[:2]] == ["EightBitMachine", "SingleDirectMachine"]
    assert len({p.seed for p in plans}) == len(plans) == 8
    first = FAMILY.plan(spec.override(models=3))
    assert [p.seed for p in first] == [p.seed for p in plans[:3]]


def test_generate_resume_and_datasets(tmp_path, monkeypatch):
    spec = tiny()
    out = tmp_path / "mlds-ds1"
    fam = FAMILY
    real_train = type(fam).train
    calls = []

    def flaky(self, spec, plans, **kwargs):
        calls.append(len(plans))
        if len(calls) == 3:
            raise KeyboardInterrupt  # interrupted half way
        return real_train(self, spec, plans, **kwargs)

    monkeypatch.setattr(type(fam), "train", flaky)
    with pytest.raises(KeyboardInterrupt):
        generate(spec, out, progress=False)
    monkeypatch.setattr(type(fam), "train", real_train)
    written = len(list((out / "shards").glob("*.h5")))
    assert written == 2
    manifest = generate(spec, out, progress=False)
    assert manifest.num_models == 8
    ids = []
    for split in ("train", "val", "test"):
        ds = weightzoo.MLDS(tmp_path, subset="ds1", split=split, filter_viable=False)
        ids += [int(i) for i in ds.reader.column("model_id")[ds.model_indices]]
        item = ds[0]
        assert item["weights"].shape == (4364,) and item["machine"].dtype == torch.int64
    assert sorted(ids) == list(range(8))  # nothing lost or duplicated
    columns = Manifest.load(out).columns
    for column in ("machine", "backdoor", "epochs", "passed", "device", "final_eval_loss"):
        assert column in columns

    ds2 = tiny("ds2", per_class=2, shard_models=8, split_fractions=(1.0, 0.0, 0.0))
    generate(ds2, tmp_path / "mlds-ds2", progress=False)
    pair = weightzoo.MLDSBackdoor(tmp_path, split="train", filter_viable=False)
    labels = {int(pair[i]["backdoor"]) for i in range(len(pair))}
    assert labels == {0, 1}
    assert "trigger_loss" in Manifest.load(tmp_path / "mlds-ds2").metrics
    histories = weightzoo.Zoo(tmp_path / "mlds-ds2").model_columns([0])
    assert histories["trigger_loss_history"].shape == (1, ds2.max_epochs)
    assert np.isfinite(histories["trigger_loss_history"][0, 0])


def test_ds3_generates(tmp_path):
    spec = tiny("ds3", split_fractions=(1.0, 0.0, 0.0))
    generate(spec, tmp_path / "mlds-ds3", progress=False)
    ds = weightzoo.MLDS(tmp_path, subset="ds3", filter_viable=False)
    assert len(ds) == 4 and ds[0]["weights"].shape == (126_990,)
    assert sorted(set(ds.reader.column("automaton").tolist())) == [0, 1]


def _train_and_rebuild(tmp_path, threshold, epochs):
    spec = tiny(
        machines=("SingleDirectMachine",),
        per_class=2,
        seq_len=6,
        train_size=128,
        val_size=64,
        batch_size=128,
        lr=3e-2,
        max_epochs=epochs,
        threshold=threshold,
        shard_models=2,
        split_fractions=(1.0, 0.0, 0.0),
    )
    generate(spec, tmp_path / "mlds-ds1", progress=False)
    ds = weightzoo.MLDS(tmp_path, subset="ds1", filter_viable=False)
    reader = ds.reader
    assert reader.column("stopped")[ds.model_indices].all(), "should reach the threshold"
    fresh = machine_set("SingleDirectMachine", count=256, steps=6, seed=123)
    target = fresh.outputs.astype(bool)
    val = class_data(spec, "SingleDirectMachine")["val"]
    accuracies = []
    for index in range(len(ds)):
        net = MLDSNet(DS1_NET)  # a plain nn.Module with nn.GRU
        net.load_state_dict(unflatten(ds[index]["weights"], ds.zoo.layout))
        with torch.no_grad():
            out = net(network_inputs(val.inputs, spec.signed_inputs))
            val_loss = float(((out - torch.from_numpy(val.outputs).float()) ** 2).mean())
            bits = (net(network_inputs(fresh.inputs, spec.signed_inputs)) > 0.5).numpy()
        row = ds.model_indices[index]
        stored = reader.column("final_val_loss")[row]
        both = ds.zoo.reader("train", None).metrics["val_loss"][row]  # init and final
        assert both[-1] < 0.6 * both[0]
        assert val_loss == pytest.approx(float(stored), rel=1e-4)  # the very network trained
        right = bits == target
        accuracies.append((right.mean(), right.all(axis=2).mean()))
    # The best constant answer (per output line) as a floor the networks must beat.
    majority = target.mean(axis=(0, 1)) > 0.5
    floor = (target == majority).mean()
    return accuracies, floor


def test_rebuilt_module_reproduces_machine(tmp_path):
    # A loose threshold keeps this fast; the zoo specs use 1e-2 (small DS1/DS2), 1e-5 (paper).
    accuracies, floor = _train_and_rebuild(tmp_path, threshold=0.05, epochs=150)
    for bit_acc, _ in accuracies:
        assert bit_acc > floor, (bit_acc, floor)


@pytest.mark.slow
def test_rebuilt_module_reproduces_machine_closely(tmp_path):
    accuracies, _ = _train_and_rebuild(tmp_path, threshold=0.004, epochs=2000)
    for bit_acc, word_acc in accuracies:
        assert bit_acc > 0.98 and word_acc > 0.9, (bit_acc, word_acc)


def test_same_spec_same_zoo(tmp_path):
    spec = tiny("ds3", split_fractions=(1.0, 0.0, 0.0), per_class=1)
    rows = []
    for run in ("a", "b"):
        generate(spec, tmp_path / run / "mlds-ds3", progress=False)
        ds = weightzoo.MLDS(tmp_path / run, subset="ds3", filter_viable=False)
        rows.append(np.stack([ds[i]["weights"].numpy() for i in range(len(ds))]))
    assert np.array_equal(rows[0], rows[1])


def test_failed_networks_are_retrained_from_new_seeds(tmp_path):

    fam = FAMILY
    never = tiny(threshold=1e-12, attempts=3, per_class=1)  # nobody passes: three attempts each
    plans = fam.plan(never)
    seen: list[int] = []
    records = fam.train(
        never, plans, BlockRun(progress=False, on_epoch=lambda m, p: seen.append(m))
    )
    assert seen == [2, 2] * 3  # two networks, two epochs, three attempts
    for plan, record in zip(plans, records, strict=True):
        machine = plan.columns["machine"]
        assert record.columns["attempt"] == 2 and not record.columns["passed"]
        assert record.columns["init_seed"] == model_seed("ds1", machine, 0, 2) != plan.seed
        assert model_seed("ds1", machine, 0, 0) == plan.seed  # attempt 0 keeps the old seed
        # checkpoint 0 is the stored attempt's initialisation
        init = init_population(never.net, [record.columns["init_seed"]], "cpu", never.init)
        first = torch.cat([v.reshape(1, -1) for v in init.values()], dim=1)[0]
        np.testing.assert_array_equal(record.weights[0], first.numpy())
    always = dataclasses.replace(never, threshold=1e9, min_bit_accuracy=0.0)
    records = fam.train(always, plans, BlockRun(progress=False))
    assert all(r.columns["attempt"] == 0 and r.columns["passed"] for r in records)
    assert [r.columns["epochs"] for r in records] == [1, 1]
    # give_up applies to every attempt but the last
    spec = tiny(attempts=2, give_up=(1, 0.0))
    assert spec.settings(last_attempt=False).give_up == (1, 0.0)
    assert spec.settings().give_up is None
    assert isinstance(spec.settings(), TrainSettings)
    assert tiny(attempts=2, give_up=(2, 0.1)).settings(last_attempt=False).give_up is None
    with pytest.raises(ValueError, match="give_up's epoch"):
        tiny(give_up=(0, 0.1))
    with pytest.raises(ValueError, match="after the backdoor warm-up"):
        tiny("ds2", backdoor_warmup=5, give_up=(5, 0.1))
    with pytest.raises(ValueError, match="attempts"):
        tiny(attempts=0)
    generate(tiny(threshold=1e-12, attempts=2, per_class=1), tmp_path / "z", progress=False)
    columns = Manifest.load(tmp_path / "z").columns
    assert "attempt" in columns and "init_seed" in columns


def test_attempt_rounds_run_side_by_side_after_the_first():
    # which attempt a network keeps, and refilling freed rows, are in test_mlds_refill.py
    spec = tiny(attempts=9, parallel_attempts=3, per_class=1)
    assert [list(r) for r in spec.attempt_rounds()] == [[0], [1, 2, 3], [4, 5, 6], [7, 8]]
    assert [list(r) for r in tiny(attempts=3).attempt_rounds()] == [[0], [1], [2]]
    with pytest.raises(ValueError, match="parallel_attempts"):
        tiny(parallel_attempts=0)


def test_backdoor_warmup_skips_inverted_outputs_in_the_training_loss():

    spec = tiny("ds2", per_class=1, train_size=16, seq_len=16, trigger_every=8)
    sets = class_data(spec, "EightBitMachine")
    inverted = sets["train"].inverted
    assert inverted is not None and inverted.sum() == 16 * 2 * 3  # two triggers, 3 steps each
    assert class_data(tiny(), "EightBitMachine")["train"].inverted is None
    data = PopulationData({k: [v] for k, v in sets.items()}, signed_inputs=True)
    pop = toolkit.Population(
        init_population(spec.net, [3], "cpu", "orthogonal"), {"class": torch.zeros(1).long()}
    )
    rows = torch.arange(16)[None]
    task = MLDSTask(spec.net, data, backdoor_warmup=2)
    for epoch, skipped in ((0, True), (1, True), (2, False)):
        task.begin_epoch(epoch)
        loss = task.train_loss(pop, rows, None)
        _, _, mask = data.gather("train", pop.buffers["class"], rows, skip_inverted=skipped)
        x, y, _ = data.gather("train", pop.buffers["class"], rows)
        pred = population_forward(spec.net, pop.params, x)
        expected = (((pred - y) ** 2).sum(-1) * mask).sum() / (mask.sum() * 8)
        torch.testing.assert_close(loss[0], expected, rtol=1e-5, atol=1e-7)
        assert int(mask.sum()) == 16 * 16 - (int(inverted.sum()) if skipped else 0)
    task.begin_epoch(0)  # measured metrics count every step, also during the warm-up
    _, count = task.eval_sums(pop, "train", 0, 16)["loss"]
    assert int(count[0]) == 16 * 16 * 8
    assert spec.settings().backdoor_warmup == 0
    assert tiny("ds2", backdoor_warmup=3).settings().backdoor_warmup == 3
    assert tiny("ds1", backdoor_warmup=3).settings().backdoor_warmup == 0  # no trigger in DS1


def test_shared_init_starts_every_network_from_one_initialisation():
    plain = tiny(per_class=2)
    shared = tiny(per_class=2, shared_init=7)
    # a spec without the option keeps the spec dict (and fingerprint) it had before it existed
    assert "shared_init" not in plain.to_dict() and shared.to_dict()["shared_init"] == 7
    assert plain.fingerprint() != shared.fingerprint()
    plans = FAMILY.plan(shared)
    records = FAMILY.train(shared, plans, BlockRun(progress=False))
    starts = np.stack([r.weights[0] for r in records])
    finals = np.stack([r.weights[-1] for r in records])
    init = init_population(shared.net, [7], "cpu", shared.init)
    first = torch.cat([v.reshape(1, -1) for v in init.values()], dim=1)[0].numpy()
    np.testing.assert_array_equal(starts, np.broadcast_to(first, starts.shape))
    assert all(r.columns["init_seed"] == 7 for r in records)
    # data order still differs per network: no two networks end at the same weights
    assert len({row.tobytes() for row in finals}) == len(records)
    separate = FAMILY.train(plain, FAMILY.plan(plain), BlockRun(progress=False))
    assert len({r.weights[0].tobytes() for r in separate}) == len(separate)
