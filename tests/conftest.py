import os
import shlex
import shutil
import subprocess
import sys
import sysconfig

import pytest

import cnn_core

# Shared test helpers (finite_differences.py) import as top-level modules from any test.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def restore_threads():
    """Whatever a test sets with cnn_core.set_num_threads, the next test starts as before."""
    n = cnn_core.get_num_threads()
    yield
    cnn_core.set_num_threads(n)


class CToolchain:
    """Builds the tests' own C code (emulated kernels, an allocation counter) with the system
    C compiler. A failure to build fails the test with the compiler's message; only a missing
    compiler skips."""

    def __init__(self, tmp_dir):
        self.tmp_dir = tmp_dir
        self.cc = None
        for cc in (os.environ.get("CC"), sysconfig.get_config_var("CC"), "cc", "gcc"):
            if cc and shutil.which(shlex.split(cc)[0]):  # CC may be "ccache gcc"
                self.cc = shlex.split(cc)
                break

    def accepts(self, flag):
        """Whether the compiler builds a trivial program with `flag` (e.g. -fopenmp)."""
        src = self.tmp_dir / "probe.c"
        src.write_text("int main(void) { return 0; }\n")
        return subprocess.run([*self.cc, flag, str(src), "-o", str(self.tmp_dir / "probe")],
                              capture_output=True).returncode == 0

    def shared_library(self, sources, name, flags=(), include_dirs=()):
        """Compile `sources` into tmp_dir/name (a shared library); returns its path."""
        output = self.tmp_dir / name
        cmd = [*self.cc, "-std=gnu11", "-fPIC", "-shared", "-Wall", "-Wno-unused-function",
               *flags, *(f"-I{d}" for d in include_dirs), *map(str, sources), "-o",
               str(output), "-lm"]
        build = subprocess.run(cmd, capture_output=True, text=True)
        assert build.returncode == 0, f"building {name} failed:\n{build.stderr}"
        return output


@pytest.fixture(scope="session")
def c_toolchain(tmp_path_factory):
    toolchain = CToolchain(tmp_path_factory.mktemp("c_build"))
    if toolchain.cc is None:
        pytest.skip("no C compiler to build the test's C code")
    return toolchain


@pytest.fixture(autouse=True)
def _restore_global_state():
    """Tests may change the thread count or backend; put them back afterwards."""
    threads = cnn_core.get_num_threads()
    yield
    cnn_core.set_num_threads(threads)
    try:
        import pynn.backend

        pynn.backend.set_backend(os.environ.get("PYNN_BACKEND", "cnn_core"))
    except Exception:
        pass
