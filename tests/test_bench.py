"""The ``bench`` command on a tiny random model: it runs and reports sane fields."""

from __future__ import annotations

import json
import math

import pytest

from airoboros_ggml.cli import main
from airoboros_ggml.formats import write_gguf
from airoboros_ggml.ggml_types import FileType
from airoboros_ggml.tools.bench import process_age_s, render, run_bench
from airoboros_ggml.tools.synthetic import random_llama_tensors, tiny_hparams, tiny_vocab


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    hp = tiny_hparams(ftype=FileType.MOSTLY_Q4_0)
    path = tmp_path_factory.mktemp("bench") / "tiny-q4_0.gguf"
    tensors = random_llama_tensors(hp, FileType.MOSTLY_Q4_0, quantize=False)
    write_gguf(path, hp, tiny_vocab(hp.n_vocab), tensors)
    return path


def test_run_bench_reports_sane_fields(tiny_model):
    r = run_bench(tiny_model, n_prompt=24, n_gen=6, n_threads=1, n_ctx=64, reps=2, n_batch=16)
    assert r["n_prompt"] == 24 and r["n_gen"] == 6 and r["reps"] == 2 and r["n_ctx"] == 64
    for key in ("prompt_tok_s", "gen_tok_s", "gen_long_tok_s", "ttft_s"):
        assert len(r["runs"][key]) == 2
        assert all(math.isfinite(v) and v > 0 for v in r["runs"][key])
        assert min(r["runs"][key]) <= r[key] <= max(r["runs"][key])
    assert r["file_bytes"] == tiny_model.stat().st_size
    assert r["kv_cache_bytes"] > 0
    assert all(v >= 0 for v in r["rss_now"].values())
    assert r["rss_budget_bytes"] == r["file_bytes"] + r["kv_cache_bytes"] + 300 * 1024 * 1024
    assert 10 * 1024 * 1024 < r["peak_rss_bytes"] < 64 * 1024**3
    age = process_age_s()
    assert r["process_ttft_s"] is None or 0 < r["process_ttft_s"] <= age
    table = render(r)
    assert "prompt processing (24 tok)" in table and "peak RSS" in table


def test_bench_cli_json(tiny_model, capsys):
    argv = ["bench", "-m", str(tiny_model), "-p", "8", "-n", "3", "-t", "1", "--reps", "1", "--json"]
    assert main(argv) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["n_ctx"] == 600 and r["format"].lower().startswith("gguf")
    assert r["prompt_tok_s"] > 0 and r["gen_tok_s"] > 0 and r["ttft_s"] > 0


def test_bench_cli_rejects_bad_sizes(tiny_model, capsys):
    assert main(["bench", "-m", str(tiny_model), "-p", "100", "-c", "50", "--reps", "1"]) == 2
    assert "too small" in capsys.readouterr().err
