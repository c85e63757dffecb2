"""The wheel builds (PEP 517, isolated), installs into a fresh venv and works from a directory
outside the source tree. Slow (it downloads the build requirements); CI runs it."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _run(cmd, cwd, **kw):
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, **kw)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.mark.skipif(not (ROOT / "setup.py").exists(), reason="needs the source tree")
def test_wheel_builds_installs_and_imports_outside_the_tree(tmp_path):
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)], cwd=tmp_path)
    wheels = list(dist.glob("pynn-*.whl"))
    assert len(wheels) == 1, wheels
    wheel = wheels[0]
    assert wheel.stat().st_size < 2 * 1024 * 1024, f"wheel is {wheel.stat().st_size} bytes"

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    py = str(venv / "bin" / "python")
    _run([py, "-m", "pip", "install", "-q", str(wheel)], cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = textwrap.dedent(
        """
        import numpy as np, cnn_core, pynn
        assert "site-packages" in cnn_core.__file__, cnn_core.__file__
        info = cnn_core.build_info()
        a = np.arange(12, dtype=np.float32).reshape(3, 4)
        np.testing.assert_allclose(cnn_core.gemm(a, a.T), a @ a.T)
        print(info["kernel"], info["openmp"])
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    out = _run([py, "-c", script], cwd=elsewhere, env=env)
    kernel, openmp = out.split()
    assert kernel in ("avx512", "avx2", "reference")
    # The wheel carries no CPU-specific build flags: a forced reference kernel also runs.
    env["PYNN_KERNEL"] = "reference"
    assert _run([py, "-c", script], cwd=elsewhere, env=env).split()[0] == "reference"
