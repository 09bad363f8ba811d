"""Value encoding: plain JSON when small, gzip+base64 with a marker when large."""

from __future__ import annotations

import base64
import gzip
import json
import random
import re
import string
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from remstate.errors import CorruptState, InvalidInput
from remstate.schema import (
    GZIP_MARKER,
    MAX_JSON_DEPTH,
    datavalue,
    decode_json,
    encode_json,
    value_bytes,
)
from remstate.schema.datavalue import compress_json_text, dumps, normalize_json
from tests.unit.strategies import FAST, json_values


def packed(raw: bytes) -> str:
    return GZIP_MARKER + base64.b64encode(gzip.compress(raw)).decode()


def nested_list(depth: int) -> Any:
    """``depth`` lists, each holding the next: ``nested_list(2) == [[]]``."""
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def nested_dict(depth: int) -> Any:
    """``depth`` objects, each holding the next under ``"k"``."""
    value: Any = {}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


class TestEncodeJson:
    def test_small_value_is_plain_compact_json(self) -> None:
        """Small values stay readable: compact separators, UTF-8 text, not escapes."""
        assert encode_json({"a": [1, 2], "b": "ü"}) == '{"a":[1,2],"b":"ü"}'

    def test_large_compressible_value_is_compressed(self) -> None:
        """Over the threshold, and smaller compressed: marker, then base64 of gzip."""
        value = [{"description": "the same words again"} for _ in range(1000)]
        text = encode_json(value)
        assert text.startswith(GZIP_MARKER)
        assert len(text) < len(dumps(value))
        raw = gzip.decompress(base64.b64decode(text[len(GZIP_MARKER) :]))
        assert json.loads(raw) == value

    def test_threshold_is_in_utf8_bytes(self) -> None:
        """At or under ``compress_over`` bytes the value stays plain."""
        value = "x" * 98  # 100 bytes of JSON with the quotes
        assert encode_json(value, compress_over=100) == json.dumps(value)
        assert encode_json("é" * 60, compress_over=100).startswith(GZIP_MARKER)

    def test_incompressible_value_stays_plain(self) -> None:
        """When gzip+base64 is not smaller, the plain JSON is kept."""
        rng = random.Random(7)
        value = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(600))
        assert encode_json(value, compress_over=0) == json.dumps(value)

    def test_output_is_deterministic(self) -> None:
        """The same value always gives the same text (gzip mtime is fixed)."""
        value = {"k": ["v" * 10] * 2000}
        assert encode_json(value) == encode_json(value)

    @pytest.mark.parametrize(
        "value", [float("nan"), float("inf"), {1, 2}, object(), b"bytes", {"a": float("-inf")}]
    )
    def test_non_json_raises_invalid_input(self, value: Any) -> None:
        """Values JSON cannot carry are refused, not written wrongly."""
        with pytest.raises(InvalidInput):
            encode_json(value)

    def test_lone_surrogate_round_trips_as_escape(self) -> None:
        """A string UTF-8 cannot carry is written with ASCII escapes and reads back equal."""
        value = {"s": "a\ud800b", "t": "ü"}
        text = encode_json(value)
        text.encode("utf-8")
        assert decode_json(text, field="f") == value

    @pytest.mark.parametrize(
        "value",
        ["\ud800\udfff", {"k": "a\udbff\udc00b"}, {"\ud800\udc00": 1}, ["ok", "x\ud83d\ude00"]],
    )
    def test_surrogate_pair_as_two_code_points_is_refused(self, value: Any) -> None:
        """JSON would read a high-then-low pair back as one character: refused, not altered."""
        assert json.loads(json.dumps(value)) != value  # why: the escapes merge on reading
        with pytest.raises(InvalidInput, match="surrogate pair"):
            encode_json(value)
        with pytest.raises(InvalidInput, match="surrogate pair"):
            normalize_json(value, what="metadata")

    @pytest.mark.parametrize("value", ["\udfff\ud800", "\ud800!\udc00", ["\ud800", "\udc00"]])
    def test_surrogates_that_do_not_pair_round_trip(self, value: Any) -> None:
        """A low before a high, or surrogates apart, read back as they were."""
        assert normalize_json(value, what="m") == value
        assert decode_json(encode_json(value), field="f") == value

    def test_document_too_large_to_read_back_is_refused(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Writers refuse what readers would reject as a decompression bomb."""
        monkeypatch.setattr(datavalue, "MAX_DECODED_BYTES", 1000)
        with pytest.raises(InvalidInput):
            compress_json_text(json.dumps("x" * 2000))


class TestDecodeJson:
    @pytest.mark.parametrize(
        ("text", "value"),
        [
            ("[]", []),
            ("{}", {}),
            ('"s"', "s"),
            ("12", 12),
            ("-1.5", -1.5),
            ("true", True),
            ("null", None),
            (" [1, 2] ", [1, 2]),
        ],
    )
    def test_plain_json(self, text: str, value: Any) -> None:
        """Plain JSON of any kind is read as it is."""
        assert decode_json(text, field="f") == value

    def test_compressed(self) -> None:
        """A gzip+base64 value written by anyone is read."""
        assert decode_json(packed(b'{"a":1}'), field="f") == {"a": 1}

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("zstd+base64:KLUv/QBYAQAA", "unknown encoding 'zstd+base64'"),
            ("brotli:abc", "unknown encoding 'brotli'"),
            ("{not json", "malformed JSON"),
            ("", "malformed JSON"),
            ("NaN", "malformed JSON"),
            ("[Infinity]", "malformed JSON"),
            ("1" * 5000, "malformed JSON"),
            (GZIP_MARKER + "!!!not base64!!!", "bad base64"),
            (GZIP_MARKER + base64.b64encode(b"not gzip").decode(), "bad gzip"),
            (GZIP_MARKER + base64.b64encode(gzip.compress(b"[1]")[:-6]).decode(), "truncated"),
            (GZIP_MARKER + base64.b64encode(gzip.compress(b"\xff\xfe")).decode(), "not UTF-8"),
            (packed(b"[1,"), "malformed JSON"),
        ],
    )
    def test_unreadable_value_raises_corrupt_state_naming_the_field(
        self, text: str, message: str
    ) -> None:
        """Unknown markers, broken base64 or gzip, and bad JSON raise CorruptState."""
        with pytest.raises(CorruptState, match=re.escape(message)) as info:
            decode_json(text, field="feedback_history", task_id="42")
        assert info.value.field == "feedback_history"
        assert info.value.task_id == "42"

    @pytest.mark.parametrize(
        "text",
        [
            "[" * 200_000,
            '{"a":' * 200_000,
            "[" * 200_000 + "]" * 200_000,
            packed(b"[" * 200_000),
        ],
    )
    def test_nesting_too_deep_to_decode_is_malformed_json(self, text: str) -> None:
        """The reviewer's ``"[" * 200000``: CorruptState naming the field, no RecursionError."""
        with pytest.raises(CorruptState, match="nested too deeply") as info:
            decode_json(text, field="metadata", task_id="42")
        assert info.value.field == "metadata"

    def test_decompression_bomb_is_refused(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A value expanding past the limit is reported, not inflated."""
        monkeypatch.setattr(datavalue, "MAX_DECODED_BYTES", 1000)
        with pytest.raises(CorruptState, match="expands to more than"):
            decode_json(packed(b"[" + b"0," * 1000 + b"0]"), field="f")


class TestRoundTrip:
    @FAST
    @given(value=json_values, compress_over=st.sampled_from([0, 64, 4096]))
    def test_every_json_value_round_trips(self, value: Any, compress_over: int) -> None:
        """decode(encode(v)) == v for every JSON value, compressed or not."""
        text = encode_json(value, compress_over=compress_over)
        assert decode_json(text, field="f") == value

    @FAST
    @given(value=json_values)
    def test_encoding_never_grows_the_value(self, value: Any) -> None:
        """The encoded text is never larger than the plain JSON."""
        plain = dumps(value)
        assert len(encode_json(value, compress_over=0).encode()) <= len(plain.encode())

    @pytest.mark.parametrize("size", [0, 1, 4096, 1_000_000])
    def test_large_and_empty_strings_round_trip(self, size: int) -> None:
        """Empty and megabyte values round-trip, with multi-byte characters."""
        value = {"text": ("ü漢😀" * size)[:size]}
        assert decode_json(encode_json(value), field="f") == value


class TestValueBytes:
    def test_counts_utf8_bytes_of_values_only(self) -> None:
        """The API server's count: UTF-8 bytes of the values; keys are free."""
        assert value_bytes({"a-long-key-name": "abc", "k": "é漢😀"}) == 3 + 2 + 3 + 4

    def test_empty(self) -> None:
        """No data, no bytes."""
        assert value_bytes({}) == 0


class TestNormalizeJson:
    def test_tuples_become_lists(self) -> None:
        """Tuples are stored as arrays, so they are normalised to lists."""
        assert normalize_json({"a": (1, (2, 3))}, what="m") == {"a": [1, [2, 3]]}

    def test_copy_is_deep(self) -> None:
        """The result shares nothing mutable with the input."""
        source: dict[str, Any] = {"a": [1]}
        copy = normalize_json(source, what="m")
        source["a"].append(2)
        assert copy == {"a": [1]}

    @pytest.mark.parametrize("nest", [nested_list, nested_dict])
    def test_nesting_up_to_the_limit_is_kept(self, nest: Any) -> None:
        """Exactly MAX_JSON_DEPTH levels (the value itself is level 1) is accepted."""
        value = nest(MAX_JSON_DEPTH)
        assert normalize_json(value, what="metadata") == value
        assert decode_json(encode_json(value), field="f") == value

    @pytest.mark.parametrize("nest", [nested_list, nested_dict])
    @pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 5000])
    def test_nesting_past_the_limit_is_invalid_input(self, nest: Any, depth: int) -> None:
        """Deeper values are refused with InvalidInput, never a RecursionError."""
        with pytest.raises(InvalidInput, match=f"more than {MAX_JSON_DEPTH} levels") as info:
            normalize_json({"config": nest(depth - 1)}, what="metadata")
        assert str(info.value).startswith("metadata.config")
        assert len(str(info.value)) < 250  # the path is cut, not 64 levels long

    def test_limit_counts_arrays_and_objects_alike(self) -> None:
        """Objects and arrays in any mix count one level each; scalars none."""
        value: Any = "leaf"
        for i in range(MAX_JSON_DEPTH):
            value = [value] if i % 2 else {"k": value}
        assert normalize_json(value, what="m") == value
        with pytest.raises(InvalidInput):
            normalize_json([value], what="m")

    def test_encoder_recursion_is_invalid_input(self) -> None:
        """encode_json of a value too deep for the JSON encoder: InvalidInput."""
        with pytest.raises(InvalidInput, match="nested too deeply"):
            encode_json(nested_list(200_000))

    @pytest.mark.parametrize(
        "value", [{1: "int key"}, {"a": float("nan")}, {"a": {1, 2}}, [b"x"], {"a": [object()]}]
    )
    def test_values_json_cannot_carry_exactly_are_refused(self, value: Any) -> None:
        """Non-string keys, NaN, sets, bytes and objects raise InvalidInput."""
        with pytest.raises(InvalidInput):
            normalize_json(value, what="metadata")
