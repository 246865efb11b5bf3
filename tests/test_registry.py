"""Registries: one registration per name, lookups that name the choices or say why not."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from inforates.loaders import LOADERS
from inforates.registry import Registry


def test_lookup_lists_the_choices_and_unavailable_names_say_why():
    reg: Registry[int] = Registry("widget")
    reg.add("a", 1)
    reg.mark_unavailable("b", "libb is not installed")
    assert reg.get("a") == 1
    assert reg.names() == ["a"] and "b" not in reg
    assert reg.unavailable() == {"b": "libb is not installed"}
    with pytest.raises(ValueError, match=r"^widget 'b' is not available here: libb is not installed$"):
        reg.get("b")
    with pytest.raises(ValueError, match=r"^unknown widget 'c'; choose from: a$"):
        reg.get("c")
    with pytest.raises(ValueError, match="already registered"):
        reg.add("a", 2)
    with pytest.raises(ValueError, match="cannot also be unavailable"):
        reg.mark_unavailable("a", "x")


def test_every_reference_loader_is_either_registered_or_says_why_not():
    for name in ("dali", "seed", "decord", "pyav", "torchcodec"):
        assert (name in LOADERS) != (name in LOADERS.unavailable()), name


def test_a_torchcodec_that_does_not_load_is_unavailable_with_its_error(tmp_path):
    """torchcodec 0.17's PyPI wheel installs beside the CPU torch but raises on import (it
    links CUDA libraries); a stand-in package that fails the same way must leave the loader
    unregistered, with the error as the reason, and the rest of inforates working."""
    fake = tmp_path / "torchcodec"
    (fake / "decoders").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "decoders" / "__init__.py").write_text(
        'raise RuntimeError("Could not load this library: libtorchcodec_core7.so\\nmore detail")\n'
    )
    code = textwrap.dedent("""
        from inforates.loaders import LOADERS
        print(LOADERS.unavailable()["torchcodec"])
        try:
            LOADERS.get("torchcodec")
        except ValueError as exc:
            print(exc)
        print(sorted(LOADERS))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    reason, error, names = done.stdout.strip().splitlines()[-3:]
    assert reason == "torchcodec does not load (Could not load this library: libtorchcodec_core7.so)"
    assert error == f"loader 'torchcodec' is not available here: {reason}"
    assert "torchcodec" not in names and "pyav" in names
