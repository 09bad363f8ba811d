"""Label selectors: the API server's syntax, matching and error messages."""

from __future__ import annotations

import pytest

from remstate.errors import InvalidObject
from remstate.store.selectors import EVERYTHING, Operator, Requirement, matches, parse

LABELS = {"role": "state", "status": "active", "n": "5", "empty": ""}


class TestMatching:
    @pytest.mark.parametrize(
        ("selector", "expected"),
        [
            ("", True),
            ("role=state", True),
            ("role==state", True),
            ("role=segment", False),
            ("role!=segment", True),
            ("role!=state", False),
            ("missing!=x", True),
            ("status in (active,failed)", True),
            ("status in (failed)", False),
            ("missing in (a)", False),
            ("status notin (failed)", True),
            ("status notin (active)", False),
            ("missing notin (a)", True),
            ("role", True),
            ("missing", False),
            ("!missing", True),
            ("!role", False),
            ("role=state,status=active", True),
            ("role=state,status=failed", False),
            ("empty=", True),
            ("empty in ()", True),
            ("role in (,state)", True),
            ("n>4", True),
            ("n>5", False),
            ("n<6", True),
            ("role>1", False),
            ("missing<9", False),
            ("  role = state ,\tstatus\nin ( active ) ", True),
            ("x in (in,notin)", False),
            ("role in (in,state)", True),
        ],
    )
    def test_selects_as_the_server(self, selector: str, expected: bool) -> None:
        """Each operator selects the same objects as the API server's."""
        assert matches(selector, LABELS) is expected

    def test_empty_selector_selects_everything(self) -> None:
        """The empty selector has no requirement and matches any labels."""
        assert parse("") == EVERYTHING
        assert parse("").empty
        assert EVERYTHING.matches({})

    def test_a_nul_between_tokens_ends_the_selector(self) -> None:
        """As in Go's lexer, a NUL where a token starts ends the text; the rest is ignored."""
        assert parse("role=state \x00garbage ((") == parse("role=state")

    def test_a_nul_inside_a_token_only_ends_the_token(self) -> None:
        """Inside an identifier, a NUL ends the identifier and lexing goes on after it."""
        with pytest.raises(InvalidObject, match="found 'garbage'"):
            parse("role=state\x00garbage")


class TestParsing:
    @pytest.mark.parametrize(
        ("selector", "requirement"),
        [
            ("a=b", Requirement("a", Operator.EQUALS, ("b",))),
            ("a==b", Requirement("a", Operator.DOUBLE_EQUALS, ("b",))),
            ("a!=b", Requirement("a", Operator.NOT_EQUALS, ("b",))),
            ("a in (y,x,y)", Requirement("a", Operator.IN, ("x", "y"))),
            ("a notin (x)", Requirement("a", Operator.NOT_IN, ("x",))),
            ("a", Requirement("a", Operator.EXISTS)),
            ("!a", Requirement("a", Operator.DOES_NOT_EXIST)),
            ("a>1", Requirement("a", Operator.GREATER_THAN, ("1",))),
            ("a<1", Requirement("a", Operator.LESS_THAN, ("1",))),
            ("example.com/a=b", Requirement("example.com/a", Operator.EQUALS, ("b",))),
        ],
    )
    def test_requirements(self, selector: str, requirement: Requirement) -> None:
        """Each form parses to one requirement, values sorted and without repeats."""
        assert parse(selector).requirements == (requirement,)

    def test_requirements_are_sorted_by_key(self) -> None:
        """Requirements come out sorted by key, as the server sorts them."""
        assert [r.key for r in parse("z=1,a=2,m").requirements] == ["a", "m", "z"]

    @pytest.mark.parametrize(
        ("selector", "text"),
        [
            ("b=1,a in (y,x),!c,d", "a in (x,y),b=1,!c,d"),
            ("a notin ()", "a notin ()"),
            ("a>1", "a>1"),
        ],
    )
    def test_string_form(self, selector: str, text: str) -> None:
        """The string form is the server's canonical one."""
        assert str(parse(selector)) == text


class TestErrors:
    @pytest.mark.parametrize(
        ("selector", "message"),
        [
            ("role in (a", "unable to parse requirement: found '', expected: ',' or ')'"),
            ("a=b c", "found 'c', expected: ',' or 'end of string'"),
            (",a", "found ',', expected: !, identifier, or 'end of string'"),
            ("a,", "found '', expected: identifier after ','"),
            ("a in b", "unable to parse requirement: found 'b' expected: '('"),
            ("!a=b", "found '=', expected: ',' or 'end of string'"),
            ("a=(b)", "unable to parse requirement: found '(', expected: identifier"),
            (
                "a b",
                "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt",
            ),
            ("a===b", "unable to parse requirement: found '=', expected: identifier"),
            ("a in (b c)", "unable to parse requirement: found 'c', expected: ',' or ')'"),
            (
                "a in (=)",
                "unable to parse requirement: found '=', expected: ',', ')' or identifier",
            ),
            (
                "a ~ b",
                "unable to parse requirement: found '~', expected: in, notin, =, ==, !=, gt, lt",
            ),
            ("=a", "found '=', expected: !, identifier, or 'end of string'"),
        ],
    )
    def test_syntax_errors_are_bad_requests(self, selector: str, message: str) -> None:
        """A selector the server cannot parse is InvalidObject with its 400 BadRequest Status."""
        with pytest.raises(InvalidObject) as caught:
            parse(selector)
        status = caught.value.status
        assert (status.code, status.reason, status.message) == (400, "BadRequest", message)

    @pytest.mark.parametrize(
        ("selector", "start"),
        [
            ("k=-x", 'unable to parse requirement: values[0][k]: Invalid value: "-x": '),
            ("k in (ok,-x)", 'unable to parse requirement: values[0][k]: Invalid value: "-x": '),
            ("k=" + "x" * 64, "unable to parse requirement: values[0][k]: Invalid value: "),
            ("bad!key", "unable to parse requirement: found '!'"),
            (
                "x/y/z",
                'unable to parse requirement: <nil>: Invalid value: "x/y/z": a valid label key',
            ),
            ("a>x", "unable to parse requirement: values[0]: Invalid value: \"x\": for 'Gt'"),
        ],
    )
    def test_invalid_keys_and_values_are_bad_requests(self, selector: str, start: str) -> None:
        """Keys and values are validated as label keys and values, with the server's paths."""
        with pytest.raises(InvalidObject) as caught:
            parse(selector)
        assert caught.value.status.code == 400
        assert caught.value.status.message.startswith(start)
