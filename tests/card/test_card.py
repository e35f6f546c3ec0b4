"""Zoo cards: the Markdown, the figures, the embedding, and the named error without matplotlib."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from weightzoo.card import read_card_metadata, write_card
from weightzoo.cli import run
from weightzoo.errors import MissingExtraError, UnknownColumnError
from weightzoo.figures import embed, load_card_data, main_metric

pytest.importorskip("matplotlib")

PNG = b"\x89PNG\r\n\x1a\n"


def test_card_writes_markdown_that_shows_every_figure(toy_zoo, tmp_path):
    card = write_card(toy_zoo, tmp_path / "card")
    text = card.read_text()
    figures = sorted((tmp_path / "card" / "figures").glob("*.png"))
    assert [f.name for f in figures] == [
        "embedding.png",
        "metric-over-epochs.png",
        "pairwise-distances.png",
        "trajectories.png",
        "weight-mean-std.png",
    ]
    for figure in figures:
        assert figure.read_bytes().startswith(PNG)
        assert f"](figures/{figure.name})" in text
    meta = read_card_metadata(text)
    import weightzoo

    assert meta["weightzoo"]["version"] == weightzoo.__version__


def test_card_data_reads_final_weights_and_classes(toy_zoo):
    data = load_card_data(toy_zoo, color_by="kind")
    assert data.metric == "test_acc" and data.final.shape == (12, 12)
    assert data.trajectories.shape == (12, 4, 12)
    np.testing.assert_array_equal(data.trajectories[:, -1], data.final)
    assert data.color_by == "kind" and set(data.columns["kind"]) == {"class0", "class1", "class2"}
    with pytest.raises(UnknownColumnError, match="cannot colour by 'colour'"):
        load_card_data(toy_zoo, color_by="colour")


def test_pca_embedding_finds_the_main_direction():
    rng = np.random.default_rng(0)
    direction = rng.standard_normal(50)
    rows = np.outer(np.linspace(-3, 3, 40), direction) + 0.01 * rng.standard_normal((40, 50))
    fitted = embed(rows.astype(np.float32))
    assert fitted.explained[0] > 0.99
    first = fitted.points[:, 0]
    assert abs(np.corrcoef(first, np.linspace(-3, 3, 40))[0, 1]) > 0.999
    np.testing.assert_allclose(fitted.transform(rows[:3]), fitted.points[:3], atol=1e-4)


def test_main_metric_prefers_held_out_accuracy():
    assert main_metric(["train_loss", "train_acc", "test_loss", "test_acc"]) == "test_acc"
    assert main_metric(["train_loss", "eval_loss", "eval_bit_accuracy"]) == "eval_bit_accuracy"
    assert main_metric(["train_loss", "val_loss"]) == "val_loss"
    assert main_metric(["train_loss", "val_loss", "eval_loss"]) == "eval_loss"


def test_card_command_and_the_error_naming_the_extra(toy_zoo, tmp_path, capsys, monkeypatch):
    assert run(["card", str(toy_zoo), "--out", str(tmp_path / "c"), "--color-by", "lr"]) == 0
    assert "5 figures" in capsys.readouterr().out
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(MissingExtraError, match=r"weightzoo\[plots\]"):
        write_card(toy_zoo, tmp_path / "d")
    assert run(["card", str(toy_zoo), "--out", str(tmp_path / "e")]) == 1
    assert "weightzoo[plots]" in capsys.readouterr().err
    assert run(["card", str(toy_zoo), "--out", str(tmp_path / "e"), "--no-plots"]) == 0
