"""The examples in the package's docstrings run, and the package stands alone."""

import doctest

import watchtrain.client
import watchtrain.protocol
import watchtrain.transport
from conftest import run_python


def test_docstring_examples():
    for module in (watchtrain.protocol, watchtrain.client, watchtrain.transport):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_import_needs_no_framework():
    result = run_python(
        "import sys, watchtrain\n"
        "print([m for m in ('torch', 'fastai', 'lightning', 'keras', 'transformers', 'numpy') if m in sys.modules])\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
