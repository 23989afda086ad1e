"""Hub download: hf:// addresses resolved through a huggingface_hub cache the test builds (never the network),
offline misses and a missing extra are clear errors, and the call made at the library boundary."""

from __future__ import annotations

import sys
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
from huggingface_hub import errors as hub_errors

import airoboros_ggml
from airoboros_ggml.errors import DownloadError
from airoboros_ggml.formats import write_gguf
from airoboros_ggml.tools.hub import HubFile, download, parse_hf_uri, resolve_model
from airoboros_ggml.tools.synthetic import random_llama_tensors, tiny_hparams, tiny_vocab

REPO, FILE = "TheBloke/tiny-llama-GGUF", "tiny.q8_0.gguf"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def populated_cache(root: Path) -> Path:
    """A huggingface_hub cache holding one model file, laid out as the library writes it."""
    repo_dir = root / ("models--" + REPO.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(COMMIT)
    blob = repo_dir / "blobs" / "3f2a9c"
    blob.parent.mkdir()
    hp = tiny_hparams()
    write_gguf(blob, hp, tiny_vocab(512), random_llama_tensors(hp, quantize=False))
    snapshot = repo_dir / "snapshots" / COMMIT / FILE
    snapshot.parent.mkdir(parents=True)
    snapshot.symlink_to(Path("..") / ".." / "blobs" / blob.name)
    return root


def test_parse_hf_uri() -> None:
    assert parse_hf_uri(f"hf://{REPO}/{FILE}") == HubFile(REPO, FILE)
    assert parse_hf_uri("hf://o/r@v1.0/sub/dir/f.bin") == HubFile("o/r", "sub/dir/f.bin", "v1.0")
    assert HubFile("o/r", "f.bin", "v1").uri == "hf://o/r@v1/f.bin"
    for bad in ("hf://only-owner", "hf://o/r/", "/path/model.bin"):
        with pytest.raises(ValueError):
            parse_hf_uri(bad)


def test_offline_cache_hit_loads_the_model(tmp_path: Path) -> None:
    cache = populated_cache(tmp_path / "hub")
    path = download(f"hf://{REPO}/{FILE}", cache_dir=cache, offline=True, progress=False)
    assert path.resolve() == (cache / f"models--{REPO.replace('/', '--')}" / "blobs" / "3f2a9c").resolve()
    logits = airoboros_ggml.load(path).logits([1, 300, 301])
    assert logits.shape == (3, 512) and np.isfinite(logits).all()


def test_offline_miss_is_a_clear_error(tmp_path: Path) -> None:
    cache = populated_cache(tmp_path / "hub")
    with pytest.raises(DownloadError, match=r"not in the Hugging Face cache .*\(HF_HUB_OFFLINE=1"):
        download(f"hf://{REPO}/other.gguf", cache_dir=cache, offline=True)
    with pytest.raises(DownloadError, match="not in the Hugging Face cache"):
        download("hf://someone/absent/x.bin", cache_dir=cache, offline=True)


def test_missing_extra_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import huggingface_hub -> ImportError
    with pytest.raises(DownloadError, match=r"pip install 'airoboros-ggml\[hub\]'"):
        download(f"hf://{REPO}/{FILE}")


def test_the_call_at_the_library_boundary(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = []

    def fake_download(repo_id, filename, **kwargs):
        calls.append((repo_id, filename, kwargs))
        if filename == "missing.bin":
            raise hub_errors.EntryNotFoundError("404 Client Error: Entry Not Found")
        return str(tmp_path / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    got = resolve_model("ignored", hf_repo=REPO, hf_file=FILE, progress=False)
    assert got == tmp_path / FILE
    repo_id, filename, kwargs = calls[-1]
    assert (repo_id, filename, kwargs["revision"], kwargs["local_files_only"]) == (REPO, FILE, None, False)
    assert kwargs["tqdm_class"] is not None  # a disabled bar: no output when not asked
    assert download(f"hf://{REPO}@v2/{FILE}", progress=True) == tmp_path / FILE
    assert calls[-1][2]["revision"] == "v2" and calls[-1][2]["tqdm_class"] is None  # huggingface_hub's own bar
    with pytest.raises(DownloadError, match="has no file 'missing.bin'"):
        download(f"hf://{REPO}/missing.bin")
    assert resolve_model("model.bin") == "model.bin" and resolve_model("smollm2") == "smollm2"
    with pytest.raises(DownloadError, match="go together"):
        resolve_model("x", hf_repo=REPO)
