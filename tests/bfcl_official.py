"""BFCL's official AST checker for tests that hold ours to it; skips where bfcl_eval is missing.

Usage: ``from bfcl_official import official_ast_checker`` then ``official_ast_checker()``. The
import trick (a stand-in model registry, so that BFCL's provider SDKs need not be installed)
lives in ``toolduel.testing.bfcl_reference``, shared with the benchmarks.
"""

import types

import pytest

from toolduel.testing.bfcl_reference import load_official_ast_checker


def official_ast_checker() -> types.ModuleType:
    """BFCL's ``ast_checker`` module, or ``pytest.skip`` when bfcl_eval is not installed."""
    try:
        return load_official_ast_checker()
    except ImportError as err:
        pytest.skip(f"BFCL's official checker is not importable: {err}")
