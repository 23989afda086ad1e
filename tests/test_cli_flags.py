"""Every flag of ``run``, ``chat`` and ``bench``, in every spelling, lands where it says (issue 15).

The flags are read from the parsers themselves, so a new flag is covered (or the test asks for it to be
classified). What a flag should set is derived from its spelling, not from the code's own table:
``--repeat-penalty`` must set ``repeat_penalty``, llama.cpp's differing names are listed here
(``LLAMA_CPP_NAMES``). Each flag is given alone; what reaches the model is recorded where the options are
final (the ``LoadOptions`` a model is built with, the ``SamplingOptions`` generation starts with, the
arguments of ``run_bench``) and must equal a run without the flag except for that one field. No model runs:
generation is intercepted before the first forward pass.
"""

from __future__ import annotations

import argparse
import io
from dataclasses import dataclass, field

import pytest

import airoboros_ggml.model as model_module
from airoboros_ggml import FileType, LoadOptions, SamplingOptions
from airoboros_ggml.cli import bench as bench_cli
from airoboros_ggml.cli import build_parser, main
from airoboros_ggml.cli import run as run_cli
from airoboros_ggml.formats import write_gguf
from airoboros_ggml.generation.results import Chunk, Timings, Usage
from airoboros_ggml.model import Model
from airoboros_ggml.tools.synthetic import random_llama_tensors, tiny_hparams, tiny_vocab

# llama.cpp spellings whose option name is not the field name (the same in every command unless listed per
# command below)
LLAMA_CPP_NAMES = {
    "temp": "temperature", "tfs": "tfs_z", "typical": "typical_p", "mirostat_lr": "mirostat_eta",
    "mirostat_ent": "mirostat_tau", "ctx_size": "n_ctx", "threads": "n_threads", "batch_size": "n_batch",
    "n_predict": "max_tokens", "reverse_prompt": "stop",
}
BENCH_NAMES = {"n_predict": "n_gen", "n_prompt": "n_prompt", "reps": "reps", "seed": "seed"}
# flags that set no option field, each checked by its own test below
MODEL_SOURCE = {"model", "hf_repo", "hf_file"}  # where the file comes from (-m, or llama.cpp's Hub flags)
OTHER_FLAGS = {
    "run": MODEL_SOURCE | {"prompt", "file", "interactive", "prompt_format", "system", "color", "n_gpu_layers",
            "grammar_file", "json_schema"},
    "chat": MODEL_SOURCE | {"prompt_format", "system", "color", "n_gpu_layers", "grammar_file", "json_schema"},
    "bench": MODEL_SOURCE | {"json", "n_gpu_layers"},
}
COMMANDS = ("run", "chat", "bench")
VALUES = {"n_ctx": 300, "grammar": 'root ::= "a"'}  # values that can run; otherwise 2, 0.5 or "XYZ" by type


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {name: sub.choices[name] for name in COMMANDS}


def _flag_actions(command: str) -> list[argparse.Action]:
    return [a for a in _subparsers()[command]._actions if a.option_strings and a.dest != "help"]


def _intended_field(command: str, action: argparse.Action) -> str:
    """The field a flag should set, from its long spelling (``--repeat-penalty`` -> ``repeat_penalty``)."""
    long = next(s for s in action.option_strings if s.startswith("--"))
    name = long[2:].replace("-", "_")
    if command == "bench" and name in BENCH_NAMES:
        return BENCH_NAMES[name]
    return LLAMA_CPP_NAMES.get(name, name)


def _cases(command: str) -> list[tuple[str, str, str]]:
    """(spelling, intended field, argparse type name) for every option flag of a command."""
    out = []
    for action in _flag_actions(command):
        intended = _intended_field(command, action)
        if intended in OTHER_FLAGS[command]:
            continue
        kind = "store_true" if action.nargs == 0 else getattr(action.type, "__name__", "str")
        out += [(spelling, intended, kind) for spelling in action.option_strings]
    return out


def _value(intended: str, kind: str) -> tuple[list[str], object]:
    """Command-line words and the field value they should produce."""
    if kind == "store_true":
        return [], True
    value = VALUES.get(intended, {"int": 2, "float": 0.5}.get(kind, "XYZ"))
    return [str(value)], value


# ------------------------------------------------------------------------------------------- recording


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    hp = tiny_hparams(ftype=FileType.MOSTLY_Q8_0, n_layer=1)
    path = tmp_path_factory.mktemp("flags") / "tiny.gguf"
    return write_gguf(path, hp, tiny_vocab(hp.n_vocab), random_llama_tensors(hp, FileType.MOSTLY_Q8_0,
                                                                              quantize=False))


@dataclass
class Seen:
    """What reached the model: its load options and template, the prompt, the final sampling options."""

    load: LoadOptions | None = None
    template: str | None = None
    prompts: list[str] = field(default_factory=list)
    sampling: list[SamplingOptions] = field(default_factory=list)


class Stop(Exception):
    """Raised by the recorders where a command would start measuring."""


@pytest.fixture
def seen(monkeypatch):
    record = Seen()
    real_load, real_stream = model_module.load, Model._stream

    def load(path, **kw):
        model = real_load(path, **kw)
        record.load, record.template = model.options, model.template.name
        return model

    def stream(self, prompt, *args, **kwargs):  # every generation path (stream, stream_chat) passes here
        record.prompts.append(prompt)
        return real_stream(self, prompt, *args, **kwargs)

    def generate(self, ids, options, *_):  # where generation would start: record, produce nothing
        record.sampling.append(options)
        yield Chunk("", (), "stop", Usage(len(ids), 0), Timings(0.0, len(ids), 0.0, 0))

    def bench_load(path, **kw):
        record.load = LoadOptions(**kw)
        raise Stop

    monkeypatch.setattr(run_cli, "load", load)
    monkeypatch.setattr(Model, "_stream", stream)
    monkeypatch.setattr(Model, "_generate", generate)
    monkeypatch.setattr(model_module, "load", bench_load)  # tools.bench imports it when called
    return record


def _run(command: str, tiny, words: list[str], seen: Seen, monkeypatch) -> Seen:
    """Run a command with ``words`` and return what reached the model (a fresh record)."""
    seen.load = seen.template = None
    seen.prompts.clear()
    seen.sampling.clear()
    base = {"run": ["-p", "hi"], "chat": [], "bench": ["-p", "8", "-n", "2", "--reps", "1"]}[command]
    monkeypatch.setattr("sys.stdin", io.StringIO("hi\n"))  # chat's one turn; run -i ends at EOF
    if command == "bench":
        with pytest.raises(Stop):
            main([command, "-m", str(tiny), *base, *words])
    else:
        assert main([command, "-m", str(tiny), *base, *words]) == 0
        assert len(seen.sampling) == 1
    return seen


def _snapshot(s: Seen) -> tuple:
    return s.load, s.template, list(s.prompts), list(s.sampling)


_BASELINES: dict[str, tuple] = {}


def _baseline(command: str, tiny, seen: Seen, monkeypatch) -> tuple:
    """What reaches the model without any optional flag (computed once per command)."""
    if command not in _BASELINES:
        _BASELINES[command] = _snapshot(_run(command, tiny, [], seen, monkeypatch))
    return _BASELINES[command]


# ------------------------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("command", COMMANDS)
def test_every_flag_is_classified_and_has_both_spellings(command):
    fields = set(LoadOptions.model_fields) | set(SamplingOptions.model_fields) | {"n_prompt", "n_gen", "reps"}
    for action in _flag_actions(command):
        intended = _intended_field(command, action)
        assert intended in fields | OTHER_FLAGS[command], f"{action.option_strings}: classify {intended!r} here"
        for s in action.option_strings:
            if s.startswith("--") and "-" in s[2:]:
                assert "--" + s[2:].replace("-", "_") in action.option_strings, f"{s} lacks its _ spelling"


@pytest.mark.parametrize(
    "command,spelling,intended,kind",
    [(c, *case) for c in COMMANDS for case in _cases(c)],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_flag_reaches_its_option_field(command, spelling, intended, kind, tiny, seen, monkeypatch):
    words, value = _value(intended, kind)
    if command == "bench" and intended in ("n_prompt", "n_gen", "reps", "seed"):
        calls = []
        monkeypatch.setattr(bench_cli, "run_bench", lambda path, **kw: calls.append(kw) or {})
        monkeypatch.setattr(bench_cli, "render", lambda report: "")
        main([command, "-m", str(tiny)])
        main([command, "-m", str(tiny), spelling, *words])
        assert calls[1] == {**calls[0], intended: value}
        return
    baseline = _baseline(command, tiny, seen, monkeypatch)
    got = _snapshot(_run(command, tiny, [spelling, *words], seen, monkeypatch))
    load, template, prompts, sampling = baseline
    if intended in LoadOptions.model_fields:
        load = load.model_copy(update={intended: value})
    else:
        assert command != "bench"
        old = sampling[0]
        value = [value, *old.stop] if intended == "stop" else value  # chat adds the template's stops after
        sampling = [old.with_overrides(**{intended: value})]
    assert getattr(load if intended in LoadOptions.model_fields else sampling[0], intended) == value
    assert got == (load, template, prompts, sampling)


def test_model_prompt_file_system_and_template_flags(tiny, seen, monkeypatch, tmp_path, capsys):
    r = _run("run", tiny, [], seen, monkeypatch)
    assert r.prompts[0].endswith("USER: hi ASSISTANT:") and r.template == "airoboros"
    for spelling in ("--prompt", "-p"):
        assert "USER: bonjour" in _run("run", tiny, [spelling, "bonjour"], seen, monkeypatch).prompts[0]
    (tmp_path / "p.txt").write_text("from a file")
    for spelling in ("-f", "--file"):
        assert main(["run", "-m", str(tiny), spelling, str(tmp_path / "p.txt")]) == 0
        assert "USER: from a file ASSISTANT:" in seen.prompts[-1]
    for command in ("run", "chat"):
        for spelling in ("--prompt-format", "--prompt_format"):
            r = _run(command, tiny, [spelling, "chatml"], seen, monkeypatch)
            assert r.template == "chatml" and "<|im_start|>user\nhi<|im_end|>" in r.prompts[0]
        r = _run(command, tiny, ["--system", "Be brief."], seen, monkeypatch)
        assert r.prompts[0].startswith("Be brief.") and "USER: hi" in r.prompts[0]
    capsys.readouterr()
    for spelling in ("-i", "--interactive"):  # the one-shot answer, then one chat turn from stdin
        monkeypatch.setattr("sys.stdin", io.StringIO("again\n"))
        seen.prompts.clear()
        assert main(["run", "-m", str(tiny), "-p", "hi", spelling]) == 0
        assert [p.count("USER:") for p in seen.prompts] == [1, 1] and "USER: again" in seen.prompts[1]
    assert "interactive chat" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["run", "chat"])
def test_grammar_file_and_json_schema_flags(command, tiny, seen, monkeypatch, tmp_path):
    baseline = _baseline(command, tiny, seen, monkeypatch)[3][0]
    grammar = tmp_path / "g.gbnf"
    grammar.write_text('root ::= "b"')
    for spelling in ("--grammar-file", "--grammar_file"):
        got = _run(command, tiny, [spelling, str(grammar)], seen, monkeypatch).sampling
        assert got == [baseline.with_overrides(grammar='root ::= "b"')]
    for spelling in ("-j", "--json-schema", "--json_schema"):
        got = _run(command, tiny, [spelling, '{"type": "object"}'], seen, monkeypatch).sampling
        assert got == [baseline.with_overrides(json_schema={"type": "object"})]


@pytest.mark.parametrize("command", COMMANDS)
def test_color_gpu_and_json_flags(command, tiny, seen, monkeypatch, capsys):
    if command != "bench":
        baseline = _baseline(command, tiny, seen, monkeypatch)
        assert _snapshot(_run(command, tiny, ["--color"], seen, monkeypatch)) == baseline  # stdout is no tty
        for spelling in ("-ngl", "--n-gpu-layers", "--n_gpu_layers", "--gpu-layers", "--gpu_layers"):
            assert _snapshot(_run(command, tiny, [spelling, "0"], seen, monkeypatch)) == baseline
    else:
        monkeypatch.setattr(bench_cli, "run_bench", lambda path, **kw: {"n_ctx": kw.get("n_ctx")})
        monkeypatch.setattr(bench_cli, "render", lambda report: "TABLE")
        assert main([command, "-m", str(tiny), "--json"]) == 0
        assert capsys.readouterr().out == '{\n  "n_ctx": null\n}\n'
        assert main([command, "-m", str(tiny)]) == 0 and capsys.readouterr().out == "TABLE\n"
    capsys.readouterr()
    assert main([command, "-m", str(tiny), "-ngl", "1"]) == 2
    assert "GPU offload is not available" in capsys.readouterr().err


def test_run_prints_what_model_complete_returns(tiny, capsys):
    """``run``'s stdout is the text of ``Model.complete`` on the formatted prompt (what ``Model.chat`` does)."""
    flags = ["--temp", "0.9", "--top-k", "20", "--top_p", "0.9", "--repeat-penalty", "1.3", "--repeat_last_n", "16",
             "--presence-penalty", "0.2", "-s", "7", "-n", "10", "-c", "128", "--prompt-format", "chatml"]
    assert main(["run", "-m", str(tiny), "-p", "hello", *flags]) == 0
    out = capsys.readouterr().out
    model = model_module.load(tiny, n_ctx=128, seed=7, prompt_format="chatml")
    prompt = model.format_chat([{"role": "user", "content": "hello"}])
    done = model.complete(prompt, temperature=0.9, top_k=20, top_p=0.9, repeat_penalty=1.3, repeat_last_n=16,
                          presence_penalty=0.2, max_tokens=10, stop=list(model.template.stops))
    assert done.usage.completion_tokens == 10 and len(out) > 1
    assert out == done.text.lstrip() + "\n"
