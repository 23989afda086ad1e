"""Stop strings: streamed and non-streamed results are identical and never contain a stop string."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from airoboros_ggml.generation.stops import StopMatcher, truncate_at_stop

ALPHABET = ["a", "b", "U", "S", "E", "R", ":", " ", "\n", "😀", "👍🏽", "中", "文", "<", "|", ">"]
texts = st.lists(st.sampled_from(ALPHABET), max_size=60).map("".join)
stop_sets = st.lists(
    st.one_of(
        st.lists(st.sampled_from(ALPHABET), min_size=0, max_size=5).map("".join),
        st.sampled_from(["USER:", "中文", "😀😀", "<|im_end|>", "a", ""]),
    ),
    max_size=4,
)


def stream(text: str, cuts: list[int], stops: list[str]) -> tuple[list[str], bool]:
    m = StopMatcher(stops)
    pieces, stopped, prev = [], False, 0
    for cut in [*sorted(set(cuts)), len(text)]:
        piece, stopped = m.push(text[prev:cut])
        pieces.append(piece)
        prev = cut
        if stopped:
            break
    pieces.append(m.flush())
    return pieces, stopped


@settings(max_examples=400, deadline=None)
@given(text=texts, stops=stop_sets, data=st.data())
def test_streamed_equals_non_streamed(text, stops, data):
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=12))
    pieces, stopped = stream(text, cuts, stops)
    whole, whole_stopped = truncate_at_stop(text, stops)
    assert "".join(pieces) == whole
    assert stopped == whole_stopped
    assert text.startswith(whole)
    for s in stops:
        if s:
            assert s not in whole
    # one character at a time is the finest chunking
    assert "".join(stream(text, list(range(len(text))), stops)[0]) == whole


@settings(max_examples=200, deadline=None)
@given(text=texts, stops=stop_sets, data=st.data())
def test_nothing_after_a_stop_string_and_it_is_really_there(text, stops, data):
    whole, stopped = truncate_at_stop(text, stops)
    if stopped:
        rest = text[len(whole) :]
        assert any(s and rest.startswith(s) for s in stops)
    else:
        assert whole == text


def test_stop_split_across_chunks_is_found_and_not_leaked():
    m = StopMatcher(["USER:"])
    assert m.push("Paris is the capital.") == ("Paris is the capital.", False)
    assert m.push(" US") == (" ", False)  # "US" could start "USER:" and is held back
    assert m.push("E") == ("", False)
    assert m.push("R: What") == ("", True)
    assert m.push("more") == ("", True)
    assert m.flush() == ""


def test_held_back_text_is_released_when_it_cannot_be_a_stop():
    m = StopMatcher(["USER:"])
    assert m.push("a US") == ("a ", False)
    assert m.push("A") == ("USA", False)
    assert m.push(" U") == (" ", False)
    assert m.flush() == "U"


def test_cut_at_the_stop_that_completes_first():
    # "c" completes before "abcd" could: generation would already have stopped there.
    assert truncate_at_stop("xabcd", ["abcd", "c"]) == ("xab", True)
    assert truncate_at_stop("xabcd", ["bc", "abc"]) == ("x", True)  # same end: the longer one wins
    assert truncate_at_stop("hello", []) == ("hello", False)
    assert truncate_at_stop("hello", ["", "z"]) == ("hello", False)


def test_emoji_and_cjk_are_never_split():
    text = "答案是：巴黎 😀👍🏽 USER: no"
    pieces, stopped = stream(text, list(range(len(text))), ["USER:", "😀😀"])
    assert stopped and "".join(pieces) == "答案是：巴黎 😀👍🏽 "
    for p in pieces:
        p.encode("utf-8")  # every piece is valid text on its own
