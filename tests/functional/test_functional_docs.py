"""The worked example of docs/functional.md runs as written, on a small generated zoo."""

from __future__ import annotations

import re
from pathlib import Path

from weightzoo.generate.runner import generate
from weightzoo.generate.specs import get_spec
from weightzoo.imagesets import splits as image_splits

DOC = Path(__file__).resolve().parents[2] / "docs" / "functional.md"
ZOO = "zoos/modelzoo-digits-cnn-s-seed"


def _worked_example() -> str:
    section = DOC.read_text().split("## A worked example", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.+?)\n```", section, flags=re.DOTALL)[0]


def test_worked_example_runs(tmp_path, monkeypatch, capsys):
    original = image_splits.load_splits
    original.cache_clear()

    def small(*args):
        (trx, tr_y), (vx, vy), (tex, tey) = original(*args)
        return (trx[:200], tr_y[:200]), (vx[:60], vy[:60]), (tex[:60], tey[:60])

    monkeypatch.setattr(image_splits, "load_splits", small)
    path = tmp_path / "zoo"
    generate(
        get_spec("modelzoo-digits-cnn-s-seed").override(models=3, epochs=1), path, progress=False
    )
    code = _worked_example()
    assert ZOO in code
    exec(compile(code.replace(ZOO, str(path)), str(DOC), "exec"), {})
    out = capsys.readouterr().out
    assert re.search(r"test accuracy \d\.\d{3} -> \d\.\d{3}", out), out
    assert "same top-1 on" in out
    original.cache_clear()
