"""segkit convert on Dask (issue 12 item 4): the same store bytes and provenance as the local run."""

from __future__ import annotations


import pytest
from click.testing import CliRunner

from segkit.cli import cli
from segkit.convert.plan import ConvertOptions
from segkit.convert.run import convert
from segkit.errors import UsageError
from segkit.store.format import store_digest
from segkit.store.reader import open_store
from segkit.workers import ordered_map, parse_dask_address

distributed = pytest.importorskip("distributed", reason="the 'dask' extra (dask.distributed) runs convert on Dask")


def _same_store(a, b) -> None:  # noqa: ANN001
    assert store_digest(a) == store_digest(b)
    sa, sb = open_store(a), open_store(b)
    assert {k: v for k, v in sa.attrs.items() if k != "provenance"} == {k: v for k, v in sb.attrs.items()
                                                                      if k != "provenance"}
    pa, pb = sa.provenance[-1], sb.provenance[-1]
    for key in ("parameters", "input_digest", "input_files", "output_digest", "seed"):
        assert pa[key] == pb[key], key


@pytest.fixture(scope="module")
def local_store(synth_cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "s.zarr"
    convert(synth_cohort, out, ConvertOptions(masks="rtstruct"))
    return out


def test_a_threaded_local_cluster_gives_the_local_runs_bytes(synth_cohort, local_store, tmp_path):
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        with distributed.get_task_stream(client) as stream:
            convert(synth_cohort, tmp_path / "s.zarr", ConvertOptions(masks="rtstruct"), dask=client)
    # every one of the 6 series ran on the cluster's workers
    assert sum(1 for t in stream.data if t["key"].startswith("_convert_series")) == 6
    _same_store(tmp_path / "s.zarr", local_store)


def test_cli_dask_local_processes_gives_the_local_runs_bytes(synth_cohort, local_store, tmp_path):
    result = CliRunner().invoke(cli, ["convert", str(synth_cohort), str(tmp_path / "s.zarr"), "--masks", "rtstruct",
                                      "--dask", "local:2"])
    assert result.exit_code == 0, result.output
    _same_store(tmp_path / "s.zarr", local_store)


def test_ordered_map_keeps_job_order_on_dask():
    with distributed.Client(processes=False, n_workers=2, threads_per_worker=1, dashboard_address=None) as client:
        assert list(ordered_map(_slow_square, [5, 1, 4, 2, 3], dask=client)) == [25, 1, 16, 4, 9]


def _slow_square(x: int) -> int:
    import time

    time.sleep(0.01 * x)  # later jobs finish first
    return x * x


@pytest.mark.parametrize("address, parsed", [("local", ("local", None)), ("local:3", ("local", 3)),
                                             ("tcp://10.0.0.5:8786", ("tcp://10.0.0.5:8786", None))])
def test_dask_addresses(address, parsed):
    assert parse_dask_address(address) == parsed


def test_a_bad_local_worker_count_is_a_usage_error():
    with pytest.raises(UsageError, match="--dask: local:N needs a positive number of workers"):
        parse_dask_address("local:zero")
