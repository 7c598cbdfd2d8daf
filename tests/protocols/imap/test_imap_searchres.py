"""SEARCHRES in the core: which ESEARCH options answer a RETURN list, what SAVE keeps.

Standards: RFC 5182 §2.1, §2.4; RFC 4731 §3.1; RFC 9051 §6.4.4
"""

from __future__ import annotations

import pytest

from postoffice.protocols.imap.search import result_options, saved_result


@pytest.mark.parametrize(
    ("returns", "options"),
    [
        ({"SAVE"}, None),  # SAVE alone suppresses ESEARCH
        (set(), {"ALL"}),  # RETURN () means ALL
        ({"SAVE", "MIN"}, {"MIN"}),
        ({"COUNT", "ALL"}, {"COUNT", "ALL"}),
    ],
)
def test_result_options(returns: set[str], options: set[str] | None) -> None:
    expected = None if options is None else frozenset(options)
    assert result_options(frozenset(returns)) == expected


@pytest.mark.parametrize(
    ("returns", "kept"),
    [
        ({"SAVE"}, [3, 5, 9]),
        ({"SAVE", "MIN"}, [3]),
        ({"SAVE", "MAX"}, [9]),
        ({"SAVE", "MIN", "MAX"}, [3, 9]),
        ({"SAVE", "MIN", "COUNT"}, [3, 5, 9]),  # with ALL or COUNT, the whole result
        ({"SAVE", "MAX", "ALL"}, [3, 5, 9]),
    ],
)
def test_saved_result(returns: set[str], kept: list[int]) -> None:
    assert saved_result(frozenset(returns), [3, 5, 9]) == kept
    assert saved_result(frozenset(returns), []) == []
