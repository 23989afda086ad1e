"""Independent recognisers of llama.cpp's sample grammars (regexes, ``json``, and ``lark`` Earley parsers).

They check outputs of constrained generation without llguidance, so a bug in the bridge cannot hide itself.
"""

from __future__ import annotations

import json
import re

import lark

_EN_CHAR = r"[a-zA-Z0-9!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]"
_JP_CHAR = "[\u3041-\u309f\u30a1-\u30ff\u3001-\u303e\u4e00-\u9fff]"
_MOVE = r"(?:(?:[a-h]x)?[a-h][1-8](?:=[NBKQR])?|[NBKQR][a-h]?[1-8]?x?[a-h][1-8]|O-O(?:-O)?)[+#]?"

_REGEXES = {
    "english": re.compile(rf"{_EN_CHAR}+(?:[ \t\n]{_EN_CHAR}+)*"),
    "japanese": re.compile(rf"{_JP_CHAR}+(?:[ \t\n]{_JP_CHAR}+)*"),
    "chess": re.compile(rf"1\. {_MOVE} {_MOVE}\n(?:[1-9][0-9]?\. {_MOVE} {_MOVE}\n)+"),
    "list": re.compile("(?:- [^\r\n\x0b\x0c\x85\u2028\u2029]+\n)+"),
}

_ARITHMETIC = r"""
start: (expr "=" ws term "\n")+
expr: term (/[-+*\/]/ term)*
term: ident | num | "(" ws expr ")" ws
ident: /[a-z][a-z0-9_]*/ ws
num: /[0-9]+/ ws
ws: WS?
WS: /[ \t\n]+/
"""

_C = r"""
start: declaration*
declaration: datatype identifier "(" parameter? ")" "{" statement* "}"
datatype: "int" ws | "float" ws | "char" ws
identifier: /[a-zA-Z_][a-zA-Z_0-9]*/
parameter: datatype identifier
statement: datatype identifier ws "=" ws expression ";"
    | identifier ws "=" ws expression ";"
    | identifier ws "(" arglist? ")" ";"
    | "return" ws expression ";"
    | "while" "(" condition ")" "{" statement* "}"
    | "for" "(" forinit ";" ws condition ";" ws forupdate ")" "{" statement* "}"
    | "if" "(" condition ")" "{" statement* "}" ("else" "{" statement* "}")?
    | /\/\/[^\n]*\n/
    | /\/\*([^*]|\*[^\/])*\*\//
forinit: datatype identifier ws "=" ws expression | identifier ws "=" ws expression
forupdate: identifier ws "=" ws expression
condition: expression relop expression
relop: "<=" | "<" | "==" | "!=" | ">=" | ">"
expression: term (("+" | "-") term)*
term: factor (("*" | "/") factor)*
factor: identifier | number | "-" factor | identifier "(" arglist? ")" | "(" ws expression ws ")"
arglist: expression ("," ws expression)*
number: /[0-9]+/
ws: /[ \t\n]+/
"""

# The regex and JSON grammars again as lark grammars, for prefix checks only (an Earley parse that runs out of
# input raises UnexpectedEOF: the text can still be completed).
_ENGLISH = r"""
start: CH+ (SEP CH+)*
CH: /EN_CHAR/
SEP: /[ \t\n]/
""".replace("EN_CHAR", _EN_CHAR.replace("/", "\\/"))

_JAPANESE = _ENGLISH.replace(_EN_CHAR.replace("/", "\\/"), _JP_CHAR)

_CHESS = r"""
start: "1" "." " " move " " move "\n" (/[1-9][0-9]?/ "." " " move " " move "\n")+
move: (pawn | nonpawn | castle) /[+#]/?
nonpawn: /[NBKQR]/ /[a-h]/? /[1-8]/? "x"? /[a-h]/ /[1-8]/
pawn: (/[a-h]/ "x")? /[a-h]/ /[1-8]/ ("=" /[NBKQR]/)?
castle: "O" "-" "O" ("-" "O")?
"""
# literals of one character each, so that an output cut inside "1. " or "O-O" is an unexpected end of input
# (a valid prefix), not an unexpected character

_LIST = r"""
start: item+
item: "- " /[^\r\n\x0b\x0c\x85\u2028\u2029]/+ "\n"
"""

_JSON_VALUES = r"""
?value: object | array | string | number | ("true" | "false" | "null") ws
object: "{" ws (string ":" ws value ("," ws string ":" ws value)*)? "}" ws
array: "[" ws (value ("," ws value)*)? "]" ws
string: "\"" (/[^"\\\x7f\x00-\x1f]/ | /\\(["\\\/bfnrt]|u[0-9a-fA-F]{4})/)* "\"" ws
number: /-?(0|[1-9][0-9]*)/ /\.[0-9]+/? /[eE][-+]?[0-9]+/? ws
ws: (" " | /\n[ \t]{0,20}/)?
"""

_PREFIX_GRAMMARS = {
    "english": _ENGLISH, "japanese": _JAPANESE, "chess": _CHESS, "list": _LIST,
    "json": "start: object\n" + _JSON_VALUES,
    "json_arr": 'start: "[\\n" ws (value (",\\n" ws value)*)? "]"\n' + _JSON_VALUES,
}

_PARSERS = {
    name: lark.Lark(text, parser="earley", lexer="dynamic_complete")
    for name, text in (("arithmetic", _ARITHMETIC), ("c", _C), *_PREFIX_GRAMMARS.items())
}


def recognises(grammar: str, text: str) -> bool:
    """Whether ``text`` is a sentence of llama.cpp's sample grammar ``grammar`` (file stem)."""
    if grammar == "json":
        return _json_kind(text) is dict
    if grammar == "json_arr":
        return text.startswith("[\n") and not text[-1:].isspace() and _json_kind(text) is list
    if grammar in _REGEXES:
        return _REGEXES[grammar].fullmatch(text) is not None
    try:
        _PARSERS[grammar].parse(text)
    except lark.exceptions.LarkError:
        return False
    return True


def is_prefix(grammar: str, text: str) -> bool:
    """Whether ``text`` is a sentence of ``grammar`` or can be continued into one (an output cut by max_tokens).

    A cut inside a multi-byte character leaves its bytes decoded as U+FFFD at the end: those are dropped.
    """
    text = text.rstrip("\ufffd")
    try:
        _PARSERS[grammar].parse(text)
    except lark.exceptions.UnexpectedEOF:
        return True
    except lark.exceptions.LarkError:
        return False
    return True


def _json_kind(text: str) -> type | None:
    try:
        return type(json.loads(text))
    except json.JSONDecodeError:
        return None
