"""Shared fixtures of the Python package's tests: paths of the shared models and golden outputs, the CLI.

Run from the repository root (ctest does it with the environment below):
  PYTHONPATH=python LLAMAC_LIB=build/libllamac.so python3 -m pytest -q python/tests
Environment: LLAMAC (the CLI), LLAMAC_SHARED (../shared), LLAMAC_TMP (scratch space), LLAMAC_SANITIZE (set
under ASan: timeouts are longer and the leak loops shorter).
"""
import json
import os
import sys

import pytest

# Under the sanitizers the test process preloads the ASan runtime for libllamac.so; the CLI and server it starts
# carry their own (statically linked) and refuse a second one.
PRELOAD = os.environ.pop("LD_PRELOAD", None)  # for Python subprocesses that load the library

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests"))      # serve_util
sys.path.insert(0, os.path.join(ROOT, "tests", "ref"))  # the float64 reference and the GGUF reader

LLAMAC = os.path.abspath(os.environ.get("LLAMAC", os.path.join(ROOT, "build", "llamac")))
SHARED = os.path.abspath(os.environ.get("LLAMAC_SHARED", os.path.join(ROOT, "..", "shared")))
TMP = os.path.join(os.path.abspath(os.environ.get("LLAMAC_TMP", "/tmp/llamac-test")), "python")
SANITIZE = bool(os.environ.get("LLAMAC_SANITIZE"))
STORIES = os.path.join(SHARED, "models", "stories260K")
GGUF = os.path.join(STORIES, "stories260K.gguf")
BIN = os.path.join(STORIES, "stories260K.bin")
TOK_BIN = os.path.join(STORIES, "tok512.bin")
TOK_MODEL = os.path.join(STORIES, "tok512.model")


def golden():
    """llama2.c's greedy outputs: (prompt, steps, text without run.c's final newline)."""
    out = []
    with open(os.path.join(SHARED, "testdata", "golden", "stories260K-greedy.jsonl")) as f:
        for line in f:
            g = json.loads(line)
            out.append((g["prompt"], g["steps"], g["text"][:-1] if g["text"].endswith("\n") else g["text"]))
    return out


@pytest.fixture(scope="session")
def gold():
    return golden()


@pytest.fixture(scope="session")
def sp():
    import sentencepiece
    return sentencepiece.SentencePieceProcessor(model_file=TOK_MODEL)


@pytest.fixture()
def tmp(tmp_path):
    return str(tmp_path)


def first_diff(got, want):
    i = 0
    while i < min(len(got), len(want)) and got[i] == want[i]:
        i += 1
    return "first difference at char %d: got %r, want %r" % (i, got[max(0, i - 30):i + 30], want[max(0, i - 30):i + 30])


def assert_golden(text, want):
    """llama2.c printed `want` for 200 steps; an engine that generates at least as far starts with it."""
    assert text.startswith(want), first_diff(text, want)
