"""``python -m pynn demo``: both of its Keras programs train on (a slice of) MNIST and report
a real test accuracy."""
import os
import re

import pytest

import pynn
from pynn import __main__ as cli

DATA_DIR = os.environ.get("PYNN_DATA_DIR")
pytestmark = pytest.mark.skipif(
    not DATA_DIR or not os.path.isdir(os.path.join(DATA_DIR, "mnist")),
    reason="needs PYNN_DATA_DIR with mnist/ (CI sets it to ../shared/data)")


@pytest.fixture
def small_mnist(monkeypatch):
    (x_train, y_train), (x_test, y_test) = pynn.datasets.mnist.load_data()
    data = ((x_train[:3000], y_train[:3000]), (x_test[:1000], y_test[:1000]))
    monkeypatch.setattr(cli, "_load_dataset", lambda data_dir: (data, "MNIST slice"))


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_demo_trains_and_reports_test_accuracy(small_mnist, capsys, model):
    assert cli.main(["demo", "--model", model, "--epochs", "3", "--verbose", "0"]) == 0
    out = capsys.readouterr().out
    accuracy = float(re.search(r"test accuracy ([0-9.]+)", out).group(1))
    assert accuracy > 0.8, out  # chance is 0.1


def test_demo_rejects_an_unknown_model(capsys):
    with pytest.raises(SystemExit):
        cli.main(["demo", "--model", "resnet"])
