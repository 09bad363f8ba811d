"""The ConfigMap validation rules, message for message as kube-apiserver 1.37 gives them."""

from __future__ import annotations

import pytest

from remstate.errors import InvalidObject
from remstate.store.apivalidation import (
    MAX_CONFIGMAP_SIZE,
    TOTAL_ANNOTATION_SIZE_LIMIT,
    ErrorType,
    FieldError,
    data_size,
    go_quote,
    invalid,
    is_configmap_key,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_label_value,
    is_qualified_name,
    raise_if_invalid,
    validate_annotations,
    validate_configmap,
    validate_configmap_update,
    validate_labels,
    validate_owner_references,
)
from remstate.store.base import OwnerReference

SUBDOMAIN_REGEX_ERROR = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
    "'-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', "
    "regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
KEY_REGEX_ERROR = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' "
    "(e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', "
    "regex used for validation is '[-._a-zA-Z0-9]+')"
)
LABEL_VALUE_REGEX_ERROR = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
    "or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    "'my_value',  or '12345', regex used for validation is "
    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
NAME_PART_REGEX_ERROR = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
    "end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', "
    "regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)


def configmap(**kwargs: object) -> list[FieldError]:
    fields: dict[str, object] = {"namespace": "default", "data": {}}
    fields.update(kwargs)
    name = str(fields.pop("name", "cm"))
    return validate_configmap(name, **fields)  # type: ignore[arg-type]


class TestNames:
    @pytest.mark.parametrize(
        "name", ["a", "0", "a-b", "a.b", "task-42-state", "a" * 253, "a" * 63 + "." + "b" * 63]
    )
    def test_dns_subdomains_are_valid(self, name: str) -> None:
        """DNS-1123 subdomains of up to 253 characters have no error."""
        assert is_dns1123_subdomain(name) == []

    @pytest.mark.parametrize(
        ("name", "errors"),
        [
            ("", [SUBDOMAIN_REGEX_ERROR]),
            ("Upper", [SUBDOMAIN_REGEX_ERROR]),
            ("under_score", [SUBDOMAIN_REGEX_ERROR]),
            ("-lead", [SUBDOMAIN_REGEX_ERROR]),
            ("trail-", [SUBDOMAIN_REGEX_ERROR]),
            ("a..b", [SUBDOMAIN_REGEX_ERROR]),
            ("a/b", [SUBDOMAIN_REGEX_ERROR]),
            ("é", [SUBDOMAIN_REGEX_ERROR]),
            ("abc\n", [SUBDOMAIN_REGEX_ERROR]),
            ("a" * 254, ["must be no more than 253 characters"]),
            ("A" * 254, ["must be no more than 253 characters", SUBDOMAIN_REGEX_ERROR]),
        ],
    )
    def test_other_names_get_the_servers_messages(self, name: str, errors: list[str]) -> None:
        """A name that is not a subdomain gets the server's messages, in its order."""
        assert is_dns1123_subdomain(name) == errors

    @pytest.mark.parametrize(
        ("namespace", "valid"), [("default", True), ("a.b", False), ("x" * 64, False)]
    )
    def test_namespaces_are_dns_labels(self, namespace: str, valid: bool) -> None:
        """Namespaces are DNS-1123 labels: no dots, at most 63 characters."""
        assert (is_dns1123_label(namespace) == []) is valid

    def test_dotted_namespace_is_told_about_dots(self) -> None:
        """A valid subdomain that is not a label is told it must not contain dots."""
        assert is_dns1123_label("a.b") == ["must not contain dots"]


class TestDataKeys:
    @pytest.mark.parametrize("key", ["a", "A_b-c.d", "schema_version", ".hidden", "k" * 253])
    def test_valid_keys(self, key: str) -> None:
        """Keys of [-._a-zA-Z0-9]{1,253} that do not start with '..' are valid."""
        assert is_configmap_key(key) == []

    @pytest.mark.parametrize(
        ("key", "errors"),
        [
            ("", [KEY_REGEX_ERROR]),
            ("a b", [KEY_REGEX_ERROR]),
            ("a/b", [KEY_REGEX_ERROR]),
            ("é", [KEY_REGEX_ERROR]),
            (".", ["must not be '.'"]),
            ("..", ["must not be '..'"]),
            ("..x", ["must not start with '..'"]),
            ("k" * 254, ["must be no more than 253 characters"]),
        ],
    )
    def test_invalid_keys(self, key: str, errors: list[str]) -> None:
        """Other keys get the server's messages."""
        assert is_configmap_key(key) == errors


class TestLabels:
    @pytest.mark.parametrize(
        "key", ["a", "app.kubernetes.io/managed-by", "A.b_c-D", "x" * 63, "a" * 253 + "/b"]
    )
    def test_qualified_names(self, key: str) -> None:
        """An optional subdomain prefix, then a name of at most 63 characters."""
        assert is_qualified_name(key) == []

    @pytest.mark.parametrize(
        ("key", "errors"),
        [
            ("x" * 64, ["name part must be no more than 63 bytes"]),
            ("/x", ["prefix part must be non-empty"]),
            ("p/", ["name part must be non-empty", NAME_PART_REGEX_ERROR]),
            ("-x", [NAME_PART_REGEX_ERROR]),
            ("Example.com/x", ["prefix part " + SUBDOMAIN_REGEX_ERROR]),
        ],
    )
    def test_invalid_qualified_names(self, key: str, errors: list[str]) -> None:
        """Invalid keys get the server's messages, prefix and name part named."""
        assert is_qualified_name(key) == errors

    def test_two_slashes_is_one_message(self) -> None:
        """A key with two slashes is told the whole format."""
        [message] = is_qualified_name("a/b/c")
        assert message.startswith("a valid label key must consist of")
        assert message.endswith(
            "with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        )

    @pytest.mark.parametrize("value", ["", "a", "a.b_c-d", "x" * 63])
    def test_valid_values(self, value: str) -> None:
        """Empty, or label syntax of at most 63 bytes."""
        assert is_label_value(value) == []

    @pytest.mark.parametrize(
        ("value", "errors"),
        [
            ("x" * 64, ["must be no more than 63 bytes"]),
            ("-x", [LABEL_VALUE_REGEX_ERROR]),
            ("bad value", [LABEL_VALUE_REGEX_ERROR]),
            ("é" * 32, ["must be no more than 63 bytes", LABEL_VALUE_REGEX_ERROR]),
        ],
    )
    def test_invalid_values(self, value: str, errors: list[str]) -> None:
        """Values over 63 bytes or outside the syntax get the server's messages."""
        assert is_label_value(value) == errors

    def test_label_errors_name_the_labels_field(self) -> None:
        """Each bad key or value is an Invalid error on metadata.labels."""
        errors = validate_labels({"ok": "-x"})
        assert [str(e) for e in errors] == [
            f'metadata.labels: Invalid value: "-x": {LABEL_VALUE_REGEX_ERROR}'
        ]


class TestAnnotations:
    def test_keys_are_checked_lower_cased(self) -> None:
        """Upper-case annotation keys are accepted, as the server lower-cases them to check."""
        assert validate_annotations({"Example.COM/Key": "v"}) == []

    @pytest.mark.parametrize(
        ("size", "valid"),
        [(TOTAL_ANNOTATION_SIZE_LIMIT, True), (TOTAL_ANNOTATION_SIZE_LIMIT + 1, False)],
    )
    def test_total_size_counts_keys_and_values(self, size: int, valid: bool) -> None:
        """Keys and values together may be 256 KiB, not one byte more."""
        errors = validate_annotations({"a": "x" * (size - 1)})
        assert (errors == []) is valid

    def test_too_large_annotations_message(self) -> None:
        """The size error is the server's TooLong on metadata.annotations."""
        [error] = validate_annotations({"a": "x" * TOTAL_ANNOTATION_SIZE_LIMIT})
        assert str(error) == "metadata.annotations: Too long: may not be more than 262144 bytes"
        assert error.cause() == {
            "reason": "FieldValueTooLong",
            "message": "Too long: may not be more than 262144 bytes",
            "field": "metadata.annotations",
        }


class TestOwnerReferences:
    def test_complete_reference_is_valid(self) -> None:
        """A reference with apiVersion, kind, name and uid is valid."""
        assert validate_owner_references([OwnerReference("v1", "ConfigMap", "a", "u")]) == []

    def test_empty_fields_are_required(self) -> None:
        """Each empty field is a Required error at its path."""
        errors = validate_owner_references([OwnerReference("", "", "", "")])
        assert [str(e) for e in errors] == [
            f"metadata.ownerReferences[0].{f}: Required value: must not be empty"
            for f in ("apiVersion", "kind", "name", "uid")
        ]

    @pytest.mark.parametrize("api_version", ["a/b/c", "apps/"])
    def test_malformed_api_version(self, api_version: str) -> None:
        """An apiVersion that is not group/version or version is Invalid."""
        [error] = validate_owner_references([OwnerReference(api_version, "K", "n", "u")])
        assert error.detail == "must be <group>/<version> or <version>"

    def test_events_cannot_own(self) -> None:
        """A v1 Event may not be an owner; the value is shown as the server's JSON."""
        [error] = validate_owner_references([OwnerReference("v1", "Event", "n", "u")])
        assert str(error) == (
            "metadata.ownerReferences[0]: Invalid value: "
            '{"apiVersion":"v1","kind":"Event","name":"n","uid":"u",'
            '"controller":false,"blockOwnerDeletion":false}: '
            "/v1, Kind=Event is disallowed from being an owner"
        )

    def test_one_controller_at_most(self) -> None:
        """Two references with controller set are refused, naming both."""
        refs = [
            OwnerReference("v1", "ConfigMap", "a", "u1", controller=True),
            OwnerReference("v1", "ConfigMap", "b", "u2", controller=True),
        ]
        [error] = validate_owner_references(refs)
        assert error.detail == (
            "Only one reference can have Controller set to true. "
            'Found "true" in references for ConfigMap/a and ConfigMap/b'
        )


class TestSize:
    @pytest.mark.parametrize(
        ("data", "size"),
        [
            ({}, 0),
            ({"a" * 200: ""}, 0),
            ({"a": "xyz", "b": "1"}, 4),
            ({"a": "é"}, 2),
            ({"a": "✓"}, 3),
        ],
    )
    def test_counts_value_bytes_only(self, data: dict[str, str], size: int) -> None:
        """Values count in UTF-8 bytes; keys do not count."""
        assert data_size(data) == size

    def test_binary_data_counts_too(self) -> None:
        """binaryData values count with data values."""
        assert data_size({"a": "xy"}, {"b": b"\x00\x01\x02"}) == 5

    def test_exactly_one_mebibyte_is_valid(self) -> None:
        """1,048,576 bytes of values, split over keys, are accepted."""
        half = MAX_CONFIGMAP_SIZE // 2
        assert configmap(data={"a": "x" * half, "b": "y" * half}) == []

    def test_one_byte_more_is_too_long(self) -> None:
        """One byte over is the server's TooLong on the empty path, printed '[]'."""
        [error] = configmap(data={"a": "x" * MAX_CONFIGMAP_SIZE, "b": "y"})
        assert str(error) == "[]: Too long: may not be more than 1048576 bytes"
        assert error.type is ErrorType.TOO_LONG
        assert error.field == "[]"

    def test_multibyte_values_reach_the_limit_sooner(self) -> None:
        """Two-byte characters reach the limit at half the length."""
        assert configmap(data={"a": "é" * (MAX_CONFIGMAP_SIZE // 2)}) == []
        assert configmap(data={"a": "é" * (MAX_CONFIGMAP_SIZE // 2 + 1)}) != []


class TestConfigMap:
    def test_valid_configmap_has_no_errors(self) -> None:
        """A state ConfigMap as remstate writes it is valid."""
        assert (
            configmap(
                name="task-42-state",
                data={"schema_version": "1", "iteration_history": "[]"},
                labels={"app.kubernetes.io/managed-by": "remstate"},
                annotations={"remstate.io/task-id": "Task 42/α"},
            )
            == []
        )

    def test_empty_name_is_required(self) -> None:
        """An empty name is the server's Required error."""
        [error] = configmap(name="")
        assert str(error) == "metadata.name: Required value: name or generateName is required"

    def test_errors_come_in_the_servers_order(self) -> None:
        """Name, labels, annotations, owners, data keys, then the size."""
        errors = configmap(
            name="Bad",
            labels={"k": "-x"},
            annotations={"bad key": "v"},
            owner_references=(OwnerReference("v1", "", "n", "u"),),
            data={"a b": "x" * MAX_CONFIGMAP_SIZE, "c": "y"},
        )
        assert [e.field for e in errors] == [
            "metadata.name",
            "metadata.labels",
            "metadata.annotations",
            "metadata.ownerReferences[0].kind",
            "data[a b]",
            "[]",
        ]

    def test_key_in_data_and_binary_data(self) -> None:
        """A key in both data and binaryData is refused on the data side."""
        [error] = configmap(data={"k": "v"}, binary_data={"k": b"v"})
        assert str(error) == 'data[k]: Invalid value: "k": duplicate of key present in binaryData'

    def test_bad_binary_data_key(self) -> None:
        """binaryData keys follow the same rule as data keys."""
        [error] = configmap(binary_data={"a b": b""})
        assert error.field == "binaryData[a b]"

    def test_update_repeats_metadata_checks_as_the_server(self) -> None:
        """On update the metadata errors repeat; reported, they appear once each."""
        errors = validate_configmap_update("cm", namespace="default", data={}, labels={"k": "-x"})
        assert len(errors) == 4
        assert len(invalid("cm", errors).status.details["causes"]) == 1


class TestStatus:
    def test_one_error(self) -> None:
        """One error: the message names it after a colon; details list it as a cause."""
        error = invalid("big", configmap(name="big", data={"a": "x" * (MAX_CONFIGMAP_SIZE + 1)}))
        assert isinstance(error, InvalidObject)
        assert error.status.code == 422
        assert error.status.reason == "Invalid"
        assert error.status.message == (
            'ConfigMap "big" is invalid: []: Too long: may not be more than 1048576 bytes'
        )
        assert error.status.details == {
            "name": "big",
            "kind": "ConfigMap",
            "causes": [
                {
                    "reason": "FieldValueTooLong",
                    "message": "Too long: may not be more than 1048576 bytes",
                    "field": "[]",
                }
            ],
        }

    def test_several_errors_are_bracketed(self) -> None:
        """Several errors: the message lists them in brackets, comma separated."""
        errors = configmap(name="cm", data={".": "v", "..": "w"})
        assert invalid("cm", errors).status.message == (
            'ConfigMap "cm" is invalid: [data[.]: Invalid value: ".": must not be \'.\', '
            "data[..]: Invalid value: \"..\": must not be '..']"
        )

    def test_repeated_errors_are_reported_once(self) -> None:
        """Two labels with the same bad value are one error, as on the server."""
        errors = configmap(labels={"a": "-x", "b": "-x"})
        assert len(errors) == 2
        status = invalid("cm", errors).status
        assert len(status.details["causes"]) == 1
        assert not status.message.endswith("]")

    def test_name_is_go_quoted(self) -> None:
        """The name is quoted as Go's %q does; an empty name is left out of the details."""
        assert invalid("a\nb", []).status.message == 'ConfigMap "a\\nb" is invalid'
        assert "name" not in invalid("", []).status.details

    def test_raise_if_invalid(self) -> None:
        """Raises only when there is an error."""
        raise_if_invalid("cm", [])
        with pytest.raises(InvalidObject):
            raise_if_invalid("cm", configmap(name="Bad"))


class TestGoQuote:
    @pytest.mark.parametrize(
        ("value", "quoted"),
        [
            ("abc", '"abc"'),
            ('a"b\\c', '"a\\"b\\\\c"'),
            ("tab\tnl\n", '"tab\\tnl\\n"'),
            ("\x00\x7f", '"\\x00\\x7f"'),
            ("é✓", '"é✓"'),
            ("\u200b", '"\\u200b"'),
            ("\U000e0001", '"\\U000e0001"'),
        ],
    )
    def test_like_strconv_quote(self, value: str, quoted: str) -> None:
        """Printable characters stay; others are escaped as strconv.Quote does."""
        assert go_quote(value) == quoted
