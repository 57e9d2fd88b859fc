"""``segkit anonymize --dask``: the same bytes, audit, linkage and quarantine as a local run; no PHI in task keys."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.helpers.deid_builders import tree_bytes
from segkit.cli import cli
from segkit.deid import AUDIT_NAME, anonymize_tree
from segkit.errors import MissingExtraError, UsageError

distributed = pytest.importorskip("distributed", reason="the 'dask' extra (dask.distributed) runs anonymize on Dask")

KEY = b"\x2a" * 32
TASK_KEY = re.compile(r"segkit-anonymize-[0-9a-f]{16}-[0-9]+")


def _run(cohort: Path, root: Path, **kw) -> dict[str, bytes]:  # noqa: ANN003
    """Anonymize *cohort* into ``root/out`` with a linkage file and a quarantine; every file of *root*."""
    (root / "steward").mkdir(parents=True, exist_ok=True)
    anonymize_tree(cohort, root / "out", KEY, linkage=root / "steward" / "linkage.csv", quarantine=root / "q", **kw)
    return tree_bytes(root)


@pytest.fixture(scope="module")
def local_run(synth_cohort, tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    root = tmp_path_factory.mktemp("local")
    return root, _run(synth_cohort, root, workers=1)


@pytest.fixture(scope="module")
def threaded_client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        yield client


def test_two_worker_processes_give_the_local_runs_bytes(synth_cohort, local_run, tmp_path):
    root, expected = local_run
    got = _run(synth_cohort, tmp_path, dask="local:2")
    # the audit (parent-written, in file order), outputs, settings, linkage and quarantine: all the same bytes
    assert got["out/" + AUDIT_NAME] == expected["out/" + AUDIT_NAME]
    assert sorted(got) == sorted(expected)
    assert got == expected
    assert any(k.startswith("q/") for k in got) and "steward/linkage.csv" in got


def test_task_keys_carry_no_path_and_the_state_leaves_the_cluster(synth_cohort, local_run, tmp_path,
                                                                   threaded_client):
    from segkit.deid.cluster import _STATES

    with distributed.get_task_stream(threaded_client) as stream:
        got = _run(synth_cohort, tmp_path, dask=threaded_client)
    assert got == local_run[1]
    keys = {t["key"] for t in stream.data}
    assert keys and all(TASK_KEY.fullmatch(k) for k in keys), keys
    # the run's state (key, run dictionary, file list) is gone from the scheduler and the workers
    plugins = threaded_client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.worker_plugins))
    assert not [p for p in plugins if p.startswith("segkit-anonymize-")]
    assert not _STATES


def test_an_interrupted_run_resumes_on_dask_to_the_same_bytes(synth_cohort, local_run, tmp_path, threaded_client):
    root, expected = local_run
    shutil.copytree(root, tmp_path, dirs_exist_ok=True)
    # what a killed run leaves: an audit naming only some files, a missing output, no final lists
    audit = tmp_path / "out" / AUDIT_NAME
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    audit.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records[:10]) + '{"input": "cut')
    gone = next(r["output"] for r in records[10:] if r.get("output"))
    (tmp_path / "out" / gone).unlink()
    (tmp_path / "steward" / "linkage.csv").unlink()
    (tmp_path / "q" / "segkit-quarantine.csv").unlink()
    summary = anonymize_tree(synth_cohort, tmp_path / "out", KEY, linkage=tmp_path / "steward" / "linkage.csv",
                             quarantine=tmp_path / "q", dask=threaded_client)
    assert summary.resumed == 10
    assert tree_bytes(tmp_path) == expected


def test_cli_dask_local_1(synth_cohort, tmp_path):
    runner = CliRunner()
    assert runner.invoke(cli, ["keygen", str(tmp_path / "site.key")]).exit_code == 0
    args = ["anonymize", str(synth_cohort), "", "--key-file", str(tmp_path / "site.key")]
    args[2] = str(tmp_path / "local")
    assert runner.invoke(cli, [*args, "--workers", "1"]).exit_code == 0
    args[2] = str(tmp_path / "dask")
    result = runner.invoke(cli, [*args, "--dask", "local:1"])
    assert result.exit_code == 0, result.output
    assert tree_bytes(tmp_path / "dask") == tree_bytes(tmp_path / "local")


def test_without_the_dask_extra_the_run_stops_before_out_is_made(synth_cohort, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` now fails
    with pytest.raises(MissingExtraError, match=r"--dask: needs dask.distributed: pip install 'segkit\[dask\]'"):
        anonymize_tree(synth_cohort, tmp_path / "out", KEY, dask="local:2")
    with pytest.raises(UsageError, match="--dask: local:N needs a positive number of workers"):
        anonymize_tree(synth_cohort, tmp_path / "out", KEY, dask="local:0")
    assert not (tmp_path / "out").exists()


def test_a_failing_task_names_only_the_exception_type():
    from segkit.deid.cluster import DaskTaskError, _run_batch

    with pytest.raises(DaskTaskError, match=r"^KeyError in a de-identification task") as info:
        _run_batch("no-such-run", 0, 1)
    assert info.value.__context__ is None and info.value.__cause__ is None  # nothing chained reaches a log
