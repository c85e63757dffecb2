"""The benchmark runner (python -m pynn bench): it runs, writes complete JSON, and the
thread-scaling section restores the thread counts it changes. Timings are not asserted."""
import json

import numpy as np
import pytest

import cnn_core
from pynn import benchmark


@pytest.fixture
def restore_threads():
    n = cnn_core.get_num_threads()
    torch_n = benchmark.torch.get_num_threads() if benchmark.torch is not None else None
    yield
    cnn_core.set_num_threads(n)
    if torch_n is not None:
        benchmark.torch.set_num_threads(torch_n)


def test_runner_writes_every_row_as_json(tmp_path, capsys, restore_threads):
    path = tmp_path / "bench.json"
    assert benchmark.main(["--only", "loss", "--threads", "1", "--json", str(path)]) == 0
    payload = json.loads(path.read_text())
    assert [p.name for p in tmp_path.iterdir()] == ["bench.json"]  # no temporary file left
    assert payload["threads"] == 1
    rows = payload["rows"]
    assert {r["section"] for r in rows} == {"loss"} and len(rows) >= 3
    for row in rows:
        assert row["pynn"] > 0 and row["numpy"] > 0
    assert "softmax-CE" in capsys.readouterr().out


def test_runner_rejects_unknown_sections():
    with pytest.raises(SystemExit):
        benchmark.main(["--only", "gemm,nonsense"])


def test_scaling_needs_more_than_one_thread(capsys, restore_threads):
    cnn_core.set_num_threads(1)
    table = benchmark.Table()
    benchmark.bench_scaling(table, quick=True)
    assert table.rows == [] and "skipped" in capsys.readouterr().out


def test_scaling_alternates_thread_counts_and_restores_them(monkeypatch, restore_threads):
    small = benchmark._synthetic_mnist(1024)
    monkeypatch.setattr(benchmark, "_synthetic_mnist", lambda n=0, seed=0: small)
    monkeypatch.setattr(benchmark, "TRAIN_MODELS", [("784-16-10", (16,), 256)])
    monkeypatch.setattr(benchmark, "quiesce", lambda: None)
    cnn_core.set_num_threads(2)
    torch_threads = benchmark.torch.get_num_threads() if benchmark.torch is not None else None
    table = benchmark.Table()
    benchmark.bench_scaling(table, quick=True)
    assert cnn_core.get_num_threads() == 2
    if benchmark.torch is not None:
        assert benchmark.torch.get_num_threads() == torch_threads
    (row,) = table.rows
    assert row["section"] == "scaling" and row["pynn_1_thread"] > 0
    impls = ["pynn"] + (["torch"] if benchmark.torch is not None else [])
    for impl in impls:
        assert row[impl] > 0 and np.isfinite(row["speedup"][impl]) and row["speedup"][impl] > 0


def test_peak_section_reports_one_and_n_threads(monkeypatch, restore_threads):
    monkeypatch.setattr(benchmark, "quiesce", lambda: None)
    real = cnn_core.fma_peak
    monkeypatch.setattr(cnn_core, "fma_peak", lambda n: real(n, seconds=0.005, repeats=1))
    cnn_core.set_num_threads(2)
    table = benchmark.Table()
    benchmark.bench_peak(table, quick=True)
    assert [r["case"] for r in table.rows] == ["FMA peak, 1 thread", "FMA peak, 2 threads"]
    assert all(r["gflops"] > 0 and r["pynn"] is None for r in table.rows)


def test_conv_section_times_layers_and_a_convnet_epoch(monkeypatch, restore_threads):
    monkeypatch.setattr(benchmark, "CONV_LAYERS", [(8, 10, 10, 1, 4, 3), (8, 8, 8, 4, 6, 3)])
    monkeypatch.setattr(benchmark, "CNN_SAMPLES", 256)
    monkeypatch.setattr(benchmark, "quiesce", lambda: None)
    table = benchmark.Table()
    benchmark.bench_conv(table, quick=False)
    assert [r["section"] for r in table.rows] == ["conv"] * 3
    assert "epoch convnet" in table.rows[-1]["case"]
    for row in table.rows:
        assert row["pynn"] > 0 and row["numpy"] > 0
        if benchmark.torch is not None:
            assert row["torch"] > 0
