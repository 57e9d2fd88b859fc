"""Loading the training stack: TensorFlow's native start-up chatter is filtered, real messages are not."""

from __future__ import annotations

import os

import pytest

from segkit.train.backend import _quiet_native_start_up


def test_start_up_noise_is_dropped_and_other_stderr_lines_pass(capfd: pytest.CaptureFixture[str]) -> None:
    with _quiet_native_start_up():
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
        os.write(2, b"I0000 00:00:1.0 1 port.cc:153] oneDNN custom operations are on. You may see ...\n")
        os.write(2, b"I0000 00:00:1.0 1 cudart_stub.cc:31] Could not find cuda drivers on your machine\n")
        os.write(2, b"E0000 00:00:1.0 1 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)\n")
        os.write(2, b"F0000 something real went wrong in a kernel\n")
    os.write(2, b"after the filter\n")
    err = capfd.readouterr().err
    assert err.splitlines() == ["F0000 something real went wrong in a kernel", "after the filter"]


@pytest.mark.train
def test_loading_tensorflow_prints_no_start_up_noise(capfd: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tensorflow")
    import subprocess
    import sys

    code = "from segkit.train.backend import load; b = load(); print(b.tf.__version__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().startswith("2.21")
    assert "oneDNN" not in result.stderr and "cuda" not in result.stderr.lower()
