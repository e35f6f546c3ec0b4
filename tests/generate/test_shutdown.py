"""`weightzoo generate` with worker processes under SIGINT, SIGTERM and SIGKILL.

Each test runs the real command line in a subprocess on the toy family (blocks of 3 models,
2 workers). A hook of the toy family makes chosen blocks wait forever, so that workers are
busy when the signal comes; the test synchronises on the parent's stderr (the toy's "block
starts" lines and the runner's "wrote" log lines), never on sleeps. Afterwards no process of
the run may be alive, the finished blocks must be on disk, and a rerun must give the bytes of
an uninterrupted run.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from helpers import toy_family
from weightzoo.generate import workers
from weightzoo.generate.runner import generate, plan_blocks
from weightzoo.storage import Manifest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

TESTS = Path(__file__).resolve().parents[1]
SRC = TESTS.parent / "src"
# Ctrl-C as at a terminal: a run started in the background by a shell (`cmd &`, as CI scripts
# do) inherits SIGINT ignored, and Python then leaves it ignored in the child too.
LAUNCH = (
    "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from weightzoo.families import register; register('toy', 'helpers.toy_family'); "
    "from weightzoo.cli import main; main()"
)
DEADLINE = 120.0  # seconds: a safety net against a hung run, not a way to wait
SPEC = toy_family.ToySpec(name="toy3", shard_models=3)
STARTS = re.compile(r"toy: block (\d+) starts in pid (\d+)")


def blocks_largest_first():
    blocks = plan_blocks(toy_family.ToyFamily().plan(SPEC), SPEC)
    return sorted(blocks, key=lambda b: len(b.plans), reverse=True)  # the submission order


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Shard hashes of an uninterrupted run of the same spec."""
    out = tmp_path_factory.mktemp("reference") / "zoo"
    generate(SPEC, out, progress=False)
    return hashes(out)


def hashes(path):
    return {s.file: s.sha256 for s in Manifest.load(path).shards}


def start(out: Path, hang: list[int]) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)]),
        "OMP_NUM_THREADS": "1",
        "TOY_ANNOUNCE": "1",
        "TOY_HANG_MODEL": ",".join(map(str, hang)),
    }
    env.pop("WEIGHTZOO_DEBUG", None)
    command = ["generate", "toy3", "--out", str(out), "--workers", "2", "-v"]
    return subprocess.Popen(
        [sys.executable, "-c", LAUNCH, *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


@pytest.fixture
def cleanup():
    """Processes to kill if a test fails half way (psutil checks that a pid was not reused)."""
    processes: list[psutil.Process] = []
    yield processes
    for process in processes:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass


def read_until(fd: int, done) -> str:
    """Read from ``fd`` (blocking) until ``done(text)``."""
    text = ""
    end = time.monotonic() + DEADLINE
    while not done(text):
        ready, _, _ = select.select([fd], [], [], max(0.0, end - time.monotonic()))
        if not ready:
            raise AssertionError(f"gave up waiting; stderr so far:\n{text}")
        chunk = os.read(fd, 65536)
        if not chunk:
            raise AssertionError(f"the run ended early:\n{text}")
        text += chunk.decode(errors="replace")
    return text


def first_model(block) -> int:
    return block.plans[0].model_id


def started(text: str) -> dict[int, int]:
    """``{first model id of block: worker pid}`` of the blocks that started."""
    return {int(first): int(pid) for first, pid in STARTS.findall(text)}


def wrote(text: str) -> int:
    return text.count("INFO weightzoo.generate.runner: wrote")


def ready(text: str, hung, written: int) -> bool:
    """The hung block has started and the other blocks are written."""
    return first_model(hung) in started(text) and wrote(text) == written


def finish(process: subprocess.Popen, before: str) -> tuple[int, str]:
    """Wait for the parent, and for every holder of its stderr (its workers) to let go."""
    _, rest = process.communicate(timeout=DEADLINE)
    return process.returncode, before + rest.decode(errors="replace")


def assert_gone(processes: list[psutil.Process]) -> None:
    _, alive = psutil.wait_procs(processes, timeout=DEADLINE)
    assert not alive, f"left behind: {alive}"


def start_with_one_hung_block(
    out: Path, cleanup: list
) -> tuple[subprocess.Popen, str, list[psutil.Process]]:
    """A run whose largest block hangs in one worker while the other writes every other block.

    Returns the process, its stderr so far and its worker processes (all left to ``cleanup``).
    """
    order = blocks_largest_first()
    hung = order[0]
    process = start(out, hang=[first_model(hung)])
    cleanup.append(psutil.Process(process.pid))
    text = read_until(process.stderr.fileno(), lambda t: ready(t, hung, len(order) - 1))
    family = psutil.Process(process.pid).children(recursive=True)
    cleanup.extend(family)
    return process, text, family


@pytest.mark.parametrize(
    ("signum", "code", "message"),
    [
        (signal.SIGINT, 130, "weightzoo: interrupted; completed shards are kept"),
        pytest.param(
            signal.SIGTERM,
            143,
            "weightzoo: terminated (SIGTERM); completed shards are kept",
            marks=pytest.mark.slow,  # SIGTERM's own path is tested below, by cancelled blocks
        ),
    ],
)
def test_signal_stops_workers_keeps_finished_blocks_and_resumes(
    tmp_path, reference, cleanup, signum, code, message
):
    order = blocks_largest_first()
    hung = order[0]
    out = tmp_path / "zoo"
    process, text, family = start_with_one_hung_block(out, cleanup)
    assert started(text)[first_model(hung)] in {p.pid for p in family} and len(family) >= 2
    process.send_signal(signum)
    rc, text = finish(process, text)
    assert rc == code, text
    assert text.rstrip().splitlines()[-1].startswith(message)
    assert "Traceback" not in text
    assert_gone(family)
    written = Manifest.load(out)
    assert len(written.shards) == len(order) - 1
    assert not any(s.models[0] == hung.first for s in written.shards)
    generate(SPEC, out, progress=False)  # the rerun trains the missing block alone
    assert hashes(out) == reference


def test_sigterm_cancels_blocks_that_had_not_started(tmp_path, cleanup):
    order = blocks_largest_first()
    hung = order[:2]  # both workers hang: the three other blocks wait in the queue
    out = tmp_path / "zoo"
    hung_ids = {first_model(b) for b in hung}
    process = start(out, hang=sorted(hung_ids))
    cleanup.append(psutil.Process(process.pid))
    text = read_until(process.stderr.fileno(), lambda t: hung_ids <= set(started(t)))
    family = psutil.Process(process.pid).children(recursive=True)
    cleanup.extend(family)
    process.send_signal(signal.SIGTERM)
    rc, text = finish(process, text)
    assert rc == 143, text
    assert set(started(text)) == hung_ids  # nothing else was trained
    assert_gone(family)
    assert not out.exists()  # no block finished: the run leaves no zoo.json without shards


def test_workers_exit_when_the_parent_is_killed(tmp_path, reference, cleanup):
    out = tmp_path / "zoo"
    process, text, family = start_with_one_hung_block(out, cleanup)
    assert len(family) >= 2
    process.kill()
    rc, _ = finish(process, text)  # returns once the workers let go of stderr
    assert rc == -signal.SIGKILL
    assert_gone(family)
    generate(SPEC, out, progress=False)  # the finished blocks were kept; resume
    assert hashes(out) == reference


def _generate_with_stderr(fd: int, out: str) -> None:
    import logging

    os.dup2(fd, 2)  # the workers inherit it: their "block starts" lines come to the test
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # not the test runner's capture
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", force=True
    )
    hang = first_model(blocks_largest_first()[0])
    os.environ.update(TOY_ANNOUNCE="1", TOY_HANG_MODEL=str(hang))
    generate(SPEC, out, workers=2, progress=False)


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="needs the fork start method"
)
def test_workers_notice_a_dead_parent_without_the_kernel_signal(tmp_path, monkeypatch, cleanup):
    # As on a system without PR_SET_PDEATHSIG: only the watched pipe can tell them.
    monkeypatch.setattr(workers, "_set_parent_death_signal", lambda: None)
    read_end, write_end = os.pipe()
    parent = multiprocessing.get_context("fork").Process(
        target=_generate_with_stderr, args=(write_end, str(tmp_path / "zoo"))
    )
    parent.start()
    cleanup.append(psutil.Process(parent.pid))
    os.close(write_end)
    with os.fdopen(read_end, "rb") as stderr:
        order = blocks_largest_first()
        read_until(read_end, lambda t: ready(t, order[0], len(order) - 1))
        family = psutil.Process(parent.pid).children(recursive=True)
        cleanup.extend(family)
        assert len(family) >= 2
        parent.kill()
        parent.join()
        assert_gone(family)
        stderr.read()  # end of file: no process holds the pipe any more
