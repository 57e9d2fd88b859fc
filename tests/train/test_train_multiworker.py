"""`segkit train` across machines: tf.distribute.MultiWorkerMirroredStrategy with two local workers.

Two processes, each given its own ``TF_CONFIG`` (a two-worker cluster on free
loopback ports), run the real training path (``train_run`` with
``train.strategy: multiworker``) for one step of a tiny model, each into its own
run directory as on two machines without a shared file system.  After the
step the all-reduced update must leave the same weights on both workers.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.phantom_store import write_phantom_store

pytestmark = pytest.mark.train
pytest.importorskip("tensorflow")
pytest.importorskip("tf_keras")

_WORKER = textwrap.dedent("""
    import json, sys
    from segkit.train.fit import train_run
    store, run = sys.argv[1], sys.argv[2]
    r = train_run(store, run, progress=False, overrides={
        "model": {"input_size": 32, "variant": "unet"},
        "train": {"epochs": 1, "batch_size": 4, "steps_per_epoch": 1, "strategy": "multiworker",
                  "deterministic": True, "seed": 5}})
    print(json.dumps({"steps": r.global_step, "loss": r.history[-1]["loss"]}))
""")


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _checkpoint(directory: Path) -> dict[str, np.ndarray]:
    import tensorflow as tf

    path = tf.train.latest_checkpoint(str(directory))
    assert path, f"no checkpoint in {directory}"
    reader = tf.train.load_checkpoint(path)
    return {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(path)
            if name != "_CHECKPOINTABLE_OBJECT_GRAPH"}


def test_two_workers_take_one_step_and_end_with_equal_weights(tmp_path):
    store = write_phantom_store(tmp_path / "phantom.zarr")
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    procs = []
    for index in range(2):
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "",
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        procs.append(subprocess.Popen([sys.executable, "-c", _WORKER, str(store), str(tmp_path / f"run{index}")],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    outputs = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err[err.find("Traceback"):][:6000]
            outputs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert [o["steps"] for o in outputs] == [1, 1]
    assert np.isfinite(outputs[0]["loss"]) and outputs[0]["loss"] == outputs[1]["loss"]  # loss is all-reduced too

    # Worker 0 is the chief (checkpoints/); worker 1 keeps its own copy under workers/.
    chief = _checkpoint(tmp_path / "run0" / "checkpoints")
    other = _checkpoint(tmp_path / "run1" / "workers" / "worker-1")
    weights = [n for n in chief if n.startswith("model/") and "OPTIMIZER_SLOT" not in n]
    assert len(weights) > 20 and set(chief) == set(other)
    for name in weights:
        np.testing.assert_array_equal(chief[name], other[name], err_msg=name)
    # The step really updated them: the optimizer's moment estimates are non-zero, and equal too.
    slots = [n for n in chief if n.startswith("optimizer/") and np.ndim(chief[n]) > 0]
    assert slots and any(np.any(chief[n] != 0) for n in slots), sorted(chief)[:20]
    for name in slots:
        np.testing.assert_array_equal(chief[name], other[name], err_msg=name)
    assert not (tmp_path / "run1" / "checkpoints").exists()  # only the chief writes the run's checkpoints
