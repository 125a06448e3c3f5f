"""Reads a job's outputs: the `KEY=VALUE` lines and `KEY<<EOF` heredocs it wrote to the file
$ASPHALT_OUTPUTS names, checked against the caps the master keeps to, secrets masked. Pure:
bytes in, a dict out (the file itself: runtimes/outputs_file.py)."""

from __future__ import annotations

from collections.abc import Callable

from asphalt.protocol import MAX_OUTPUT_KEYS, MAX_OUTPUT_VALUE, MAX_OUTPUTS, OUTPUT_KEY

ENV = "ASPHALT_OUTPUTS"
# The most of the file that is read: the outputs' own 1 MiB, and room for the `=`, the
# heredocs' delimiter lines and the newlines around them.
FILE_LIMIT = MAX_OUTPUTS + (64 << 10)
_SHOWN = 60  # characters of a line quoted in an error


class OutputsError(Exception):
    """The job's outputs file cannot be used; the message, its failure reason, says why."""


def parse_outputs(data: bytes, mask: Callable[[str], str] = str) -> dict[str, str]:
    """The outputs in `data`, each value passed through `mask`; a later KEY wins over an earlier.

    Blank lines are skipped. `KEY<<DELIM` starts a heredoc: its value is the lines up to the
    one that is exactly DELIM, joined by newlines. Raises OutputsError naming the line for
    anything else: a line that is neither form, a key not [A-Za-z_][A-Za-z0-9_]* (or that holds
    a secret), a heredoc never closed, text not UTF-8, a value over 64 KiB, more than 100 keys,
    over 1 MiB in all; sizes count masked values, as the master counts what it receives.
    """
    lines = _lines(data, mask)
    sizes: dict[str, int] = {}
    outputs: dict[str, str] = {}
    number = 0
    while number < len(lines):
        line, start = lines[number], number + 1
        number += 1
        if not line.strip():
            continue
        equals, heredoc = line.find("="), line.find("<<")
        if heredoc >= 0 and (equals < 0 or heredoc < equals):
            key, delimiter = line[:heredoc], line[heredoc + 2 :]
            if not delimiter:
                raise _error(start, f"{_quote(line, mask)} needs a delimiter word after <<", mask)
            try:
                end = lines.index(delimiter, number)
            except ValueError:
                why = f"{_quote(line, mask)} has no line {_quote(delimiter, mask)} to end it"
                raise _error(start, why, mask) from None
            value, number = "\n".join(lines[number:end]), end + 1
        elif equals >= 0:
            key, value = line[:equals], line[equals + 1 :]
        else:
            raise _error(start, f"{_quote(line, mask)} is neither KEY=VALUE nor KEY<<EOF", mask)
        _check_key(key, start, mask)
        value = mask(value)
        size = len(value.encode())
        if size > MAX_OUTPUT_VALUE:
            why = f"the value of {key} is over {MAX_OUTPUT_VALUE >> 10} KiB"
            raise _error(start, why, mask)
        if key not in sizes and len(sizes) == MAX_OUTPUT_KEYS:
            raise _error(start, f"more than {MAX_OUTPUT_KEYS} keys", mask)
        sizes[key] = len(key) + size
        if sum(sizes.values()) > MAX_OUTPUTS:
            raise _error(start, f"the outputs are over {MAX_OUTPUTS >> 20} MiB in total", mask)
        outputs[key] = value
    return outputs


def _lines(data: bytes, mask: Callable[[str], str]) -> list[str]:
    """The file's lines, without their `\\n` (or `\\r\\n`)."""
    try:
        text = data.decode()
    except UnicodeDecodeError as e:
        raise _error(data.count(b"\n", 0, e.start) + 1, "not UTF-8 text", mask) from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # what follows the last newline
    return [line.removesuffix("\r") for line in lines]


def _check_key(key: str, number: int, mask: Callable[[str], str]) -> None:
    if not OUTPUT_KEY.fullmatch(key):
        why = "is not a valid key: use letters, digits and _, not starting with a digit"
        raise _error(number, f"{_quote(key, mask)} {why}", mask)
    if mask(key) != key:  # keys leave the worker as they are: a masked one would not be a key
        raise _error(number, f"the key {_quote(key, mask)} holds a secret's value", mask)


def _quote(text: str, mask: Callable[[str], str]) -> str:
    """A piece of the file for an error: masked before it is cut, so no part of a secret shows."""
    shown = mask(text)
    return f'"{shown[:_SHOWN]}…"' if len(shown) > _SHOWN else f'"{shown}"'


def _error(number: int, why: str, mask: Callable[[str], str]) -> OutputsError:
    return OutputsError(mask(f"{ENV} line {number}: {why}"))
