"""Builds the tensorc Python package: the C core (src/*.c) and the extension
(python/tensorc/_C.c) into one module, tensorc._C.  Metadata is in
pyproject.toml.

    pip install .                                   # a regular install
    python setup.py build_ext --inplace             # for the tests: python/tensorc/_C*.so
"""
import glob
import os

from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def rel(pattern):
    """Source paths relative to this file, as setuptools wants them."""
    return sorted(os.path.relpath(p, HERE) for p in glob.glob(os.path.join(HERE, pattern)))


ext = Extension(
    "tensorc._C",
    sources=["python/tensorc/_C.c"] + rel("src/*.c"),
    include_dirs=["include"],
    depends=rel("src/*.h") + ["include/tensorc.h"],
    extra_compile_args=["-std=c11", "-D_GNU_SOURCE", "-O2", "-fvisibility=hidden"],
    libraries=["m", "dl", "pthread"],
)

setup(ext_modules=[ext], package_dir={"": "python"}, packages=["tensorc"],
      options={"build": {"build_base": "build/python"}})
