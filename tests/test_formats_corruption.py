"""Mutated and truncated files either load consistently or raise ModelFormatError — nothing else."""

import signal

import numpy as np
import pytest

from airoboros_ggml import FileType, ModelFormatError
from airoboros_ggml.formats import open_model_file, write_ggml, write_gguf
from airoboros_ggml.tools.synthetic import random_llama_tensors, tiny_hparams, tiny_vocab

N_MUTATIONS = 600  # per format: 1,200 files in all


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout


def _check_consistent(m, size):
    hp = m.hparams
    assert hp.n_embd % hp.n_head == 0 and hp.n_head % hp.n_head_kv == 0
    assert m.vocab.n_vocab == hp.n_vocab
    for t in m.tensors.values():
        assert 0 <= t.offset and t.offset + t.nbytes <= size
        assert t.data.nbytes == t.nbytes


def _mutations(data: bytes, rng: np.random.Generator, header_len: int):
    kind = rng.integers(0, 5)
    buf = bytearray(data)
    if kind == 0:  # cut at a random offset
        return bytes(buf[: rng.integers(0, len(buf))])
    if kind == 1:  # byte flips in the header region
        for _ in range(rng.integers(1, 4)):
            buf[rng.integers(0, header_len)] = rng.integers(0, 256)
    elif kind == 2:  # bit flips anywhere
        for _ in range(rng.integers(1, 8)):
            buf[rng.integers(0, len(buf))] ^= 1 << int(rng.integers(0, 8))
    elif kind == 3:  # wrong magic / version
        buf[rng.integers(0, 8)] = rng.integers(0, 256)
    else:  # a huge 32/64-bit value dropped into the header
        at = rng.integers(0, header_len - 8)
        buf[at : at + 8] = rng.integers(0, 256, 8, dtype=np.uint8).tobytes()
        buf[at + 3] = 0xFF
    return bytes(buf)


@pytest.mark.parametrize("fmt", ["gguf", "ggml"])
def test_corrupted_files_never_crash(tmp_path, fmt):
    hp = tiny_hparams(n_embd=256, n_layer=1, n_ff=256, n_vocab=300)
    vocab = tiny_vocab(hp.n_vocab)
    tensors = random_llama_tensors(hp, FileType.MOSTLY_Q4_K_M, quantize=False)
    writer = write_gguf if fmt == "gguf" else write_ggml
    original = writer(tmp_path / "orig", hp, vocab, tensors).read_bytes()
    first_tensor = min(t.offset for t in open_model_file(tmp_path / "orig").tensors.values())
    rng = np.random.default_rng(1234 if fmt == "gguf" else 4321)
    path = tmp_path / "mutant"
    outcomes = {"loaded": 0, "refused": 0}
    old = signal.signal(signal.SIGALRM, _alarm)
    try:
        for i in range(N_MUTATIONS):
            data = _mutations(original, rng, first_tensor)
            path.write_bytes(data)
            signal.alarm(10)
            try:
                m = open_model_file(path)
            except ModelFormatError as e:
                assert str(path) in str(e)
                outcomes["refused"] += 1
            except _Timeout:
                pytest.fail(f"mutation {i} hung")
            else:
                _check_consistent(m, len(data))
                again = open_model_file(path)
                assert again.hparams == m.hparams and list(again.tensors) == list(m.tensors)
                outcomes["loaded"] += 1
                m.close()
                again.close()
            finally:
                signal.alarm(0)
    finally:
        signal.signal(signal.SIGALRM, old)
    print(f"{fmt}: {outcomes}")
    assert outcomes["refused"] > N_MUTATIONS // 4
    assert sum(outcomes.values()) == N_MUTATIONS
