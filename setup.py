"""Build script for pynn's compiled core, ``cnn_core``.

Every ``cnn_core/*.pyx`` becomes one extension module. The build:
- uses ``-O3`` and OpenMP when the compiler has it (checked by compiling a tiny program);
  without OpenMP it still builds, serially, and ``cnn_core.build_info()['openmp']`` says so;
- never targets the build machine's CPU (no march flag): the SIMD micro-kernels carry their own ``target`` attributes
  and are chosen at import time from what the CPU reports, so one wheel runs on any x86-64.
"""
import os
import sys
import glob
import shutil
import tempfile
import textwrap
import subprocess

import numpy as np
from setuptools import setup, Extension
from setuptools.command.build_ext import build_ext
from Cython.Build import cythonize

HERE = os.path.dirname(os.path.abspath(__file__))

OPENMP_PROBE = textwrap.dedent(
    """
    #include <omp.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        return n > 0 ? 0 : 1;
    }
    """
)


def compiler_has_openmp(compiler_cmd):
    """True when ``compiler_cmd -fopenmp`` compiles and links a parallel region."""
    tmp = tempfile.mkdtemp()
    try:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(OPENMP_PROBE)
        result = subprocess.run(
            compiler_cmd + ["-fopenmp", src, "-o", os.path.join(tmp, "probe")],
            capture_output=True,
        )
        return result.returncode == 0
    except OSError:
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class BuildExtWithOpenMP(build_ext):
    """Adds -fopenmp to every extension when the compiler supports it."""

    def build_extensions(self):
        compiler_cmd = list(getattr(self.compiler, "compiler_so", ["cc"])[:1])
        use_openmp = os.environ.get("PYNN_NO_OPENMP", "") == "" and compiler_has_openmp(compiler_cmd)
        if not use_openmp:
            sys.stderr.write(
                "WARNING: the C compiler has no OpenMP support (or PYNN_NO_OPENMP is set): "
                "cnn_core is built serial; cnn_core.build_info()['openmp'] will be False.\n"
            )
        for ext in self.extensions:
            if use_openmp:
                ext.extra_compile_args.append("-fopenmp")
                ext.extra_link_args.append("-fopenmp")
        super().build_extensions()


def extensions():
    common = dict(
        include_dirs=[np.get_include(), os.path.join("cnn_core", "include")],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        # -O3 for the loops; -fno-math-errno lets sqrt/exp vectorise. No -ffast-math:
        # it would reorder reductions and break bitwise reproducibility and NaN checks.
        # -ffp-contract=off: a target clone with FMA must round like the baseline one.
        # -g0 and a stripped link: Python's default -g makes each module ~5x larger.
        extra_compile_args=["-O3", "-g0", "-fno-math-errno", "-ffp-contract=off", "-std=gnu11",
                            "-Wno-unused-function"],
        extra_link_args=["-Wl,--strip-debug"],
    )
    exts = []
    for pyx in sorted(glob.glob(os.path.join("cnn_core", "*.pyx"))):
        name = "cnn_core." + os.path.splitext(os.path.basename(pyx))[0]
        exts.append(
            Extension(
                name,
                [pyx],
                depends=glob.glob(os.path.join("cnn_core", "include", "*.h"))
                + glob.glob(os.path.join("cnn_core", "*.pxd")),
                **{k: list(v) for k, v in common.items()},
            )
        )
    return cythonize(
        exts,
        compiler_directives=dict(
            language_level=3,
            boundscheck=False,
            wraparound=False,
            cdivision=True,
            initializedcheck=False,
            embedsignature=True,
        ),
    )


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExtWithOpenMP})
