"""The API server's validation of a ConfigMap and its messages, ported as pure functions.

The embedded store must refuse exactly what kube-apiserver refuses, with the
same Status. So this module follows the server's own code (Kubernetes 1.37:
``pkg/apis/core/validation.ValidateConfigMap``, apimachinery's
``ValidateObjectMeta``, ``util/validation`` and ``api/validate/content``)
rule by rule, message by message, including its quirks:

- the size error names the field ``[]`` (the server passes an empty path);
- label keys and values say "bytes", names and data keys say "characters";
- on update, the metadata checks run several times; like the server, ``invalid``
  drops an error that repeats another, so each is reported once.

Each ``is_*`` function returns the server's messages for one value (empty when
valid). Each ``validate_*`` function returns ``FieldError`` s. ``invalid`` (in
``apistatus``, re-exported here) turns them into the ``InvalidObject`` error,
with the Status the server sends (422).

Go measures strings in UTF-8 bytes, and its regular expressions anchor at the
very end of the text: Python's ``$`` would also accept a trailing newline, so
every pattern here is used with ``fullmatch``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from remstate.objects import OwnerReference

# The field errors and the Status they make are the server's messages; they
# live with its other messages and are re-exported for the validators' callers.
from remstate.store.apistatus import ErrorType, FieldError, go_quote, invalid, raise_if_invalid

__all__ = [
    "DNS1123_LABEL_MAX_LENGTH",
    "DNS1123_SUBDOMAIN_MAX_LENGTH",
    "LABEL_VALUE_MAX_LENGTH",
    "MAX_CONFIGMAP_SIZE",
    "TOTAL_ANNOTATION_SIZE_LIMIT",
    "ErrorType",
    "FieldError",
    "data_size",
    "go_quote",
    "invalid",
    "is_configmap_key",
    "is_dns1123_label",
    "is_dns1123_subdomain",
    "is_label_value",
    "is_qualified_name",
    "raise_if_invalid",
    "validate_annotations",
    "validate_configmap",
    "validate_configmap_update",
    "validate_labels",
    "validate_object_meta",
    "validate_owner_references",
]

#: core.MaxSecretSize: the values of data and binaryData together, in bytes.
MAX_CONFIGMAP_SIZE = 1024 * 1024
#: apimachinery's TotalAnnotationSizeLimitB: keys and values together, in bytes.
TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024
DNS1123_SUBDOMAIN_MAX_LENGTH = 253
DNS1123_LABEL_MAX_LENGTH = 63
LABEL_VALUE_MAX_LENGTH = 63
_LABEL_KEY_NAME_MAX_LENGTH = 63

# --- the server's patterns and messages, verbatim ---------------------------------------

_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL_ERR = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_DNS1123_SUBDOMAIN_ERR = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
    "'-' or '.', and must start and end with an alphanumeric character"
)
_CONFIGMAP_KEY_FMT = "[-._a-zA-Z0-9]+"
_CONFIGMAP_KEY_ERR = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
_LABEL_KEY_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_KEY_ERR = (
    "must consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
_LABEL_VALUE_FMT = "(" + _LABEL_KEY_FMT + ")?"
_LABEL_VALUE_ERR = (
    "a valid label must be an empty string or consist of alphanumeric characters, "
    "'-', '_' or '.', and must start and end with an alphanumeric character"
)

_DNS1123_LABEL_RE = re.compile(_DNS1123_LABEL_FMT)
_DNS1123_SUBDOMAIN_RE = re.compile(_DNS1123_SUBDOMAIN_FMT)
_CONFIGMAP_KEY_RE = re.compile(_CONFIGMAP_KEY_FMT)
_LABEL_KEY_RE = re.compile(_LABEL_KEY_FMT)
_LABEL_VALUE_RE = re.compile(_LABEL_VALUE_FMT)


def _byte_len(value: str) -> int:
    # Go's len() counts UTF-8 bytes. A lone surrogate cannot be sent as UTF-8; the
    # server would read U+FFFD (3 bytes) in its place, which surrogatepass also counts.
    return len(value.encode("utf-8", "surrogatepass"))


def _max_len_characters(length: int) -> str:
    # util/validation.MaxLenError
    return f"must be no more than {length} characters"


def _max_len_bytes(length: int) -> str:
    # api/validate/content.MaxLenError
    return f"must be no more than {length} bytes"


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    # util/validation.RegexError, including its doubled space before " or ".
    if not examples:
        return msg + " (regex used for validation is '" + fmt + "')"
    msg += " (e.g. "
    for i, example in enumerate(examples):
        if i > 0:
            msg += " or "
        msg += "'" + example + "', "
    return msg + "regex used for validation is '" + fmt + "')"


# --- single values -------------------------------------------------------------------------


def is_dns1123_subdomain(value: str, *, length_in_bytes: bool = False) -> list[str]:
    """The server's messages for a name that is not a DNS-1123 subdomain (``util/validation``).

    ``length_in_bytes``: word the length error as ``api/validate/content`` does
    (label-key prefixes), "bytes" rather than "characters"; the rule is the same.
    """
    errs = []
    if _byte_len(value) > DNS1123_SUBDOMAIN_MAX_LENGTH:
        too_long = _max_len_bytes if length_in_bytes else _max_len_characters
        errs.append(too_long(DNS1123_SUBDOMAIN_MAX_LENGTH))
    if not _DNS1123_SUBDOMAIN_RE.fullmatch(value):
        errs.append(_regex_error(_DNS1123_SUBDOMAIN_ERR, _DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_dns1123_label(value: str) -> list[str]:
    """The server's messages for a value that is not a DNS-1123 label (namespaces)."""
    errs = []
    if _byte_len(value) > DNS1123_LABEL_MAX_LENGTH:
        errs.append(_max_len_characters(DNS1123_LABEL_MAX_LENGTH))
    if not _DNS1123_LABEL_RE.fullmatch(value):
        if _DNS1123_SUBDOMAIN_RE.fullmatch(value):
            errs.append("must not contain dots")
        else:
            errs.append(_regex_error(_DNS1123_LABEL_ERR, _DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def is_configmap_key(value: str) -> list[str]:
    """The server's messages for a data or binaryData key that is not valid."""
    errs = []
    if _byte_len(value) > DNS1123_SUBDOMAIN_MAX_LENGTH:
        errs.append(_max_len_characters(DNS1123_SUBDOMAIN_MAX_LENGTH))
    if not _CONFIGMAP_KEY_RE.fullmatch(value):
        errs.append(
            _regex_error(_CONFIGMAP_KEY_ERR, _CONFIGMAP_KEY_FMT, "key.name", "KEY_NAME", "key-name")
        )
    if value == ".":
        errs.append("must not be '.'")
    elif value == "..":
        errs.append("must not be '..'")
    elif value.startswith(".."):
        errs.append("must not start with '..'")
    return errs


def is_qualified_name(value: str) -> list[str]:
    """The server's messages for a label (or annotation) key that is not valid.

    An optional DNS-1123 subdomain prefix and ``/``, then a name of at most 63
    bytes (``api/validate/content.IsLabelKey``).
    """
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            prefix_errs = is_dns1123_subdomain(prefix, length_in_bytes=True)
            errs.extend("prefix part " + m for m in prefix_errs)
    else:
        return [
            "a valid label key "
            + _regex_error(_LABEL_KEY_ERR, _LABEL_KEY_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part must be non-empty")
    elif _byte_len(name) > _LABEL_KEY_NAME_MAX_LENGTH:
        errs.append("name part " + _max_len_bytes(_LABEL_KEY_NAME_MAX_LENGTH))
    if not _LABEL_KEY_RE.fullmatch(name):
        errs.append(
            "name part "
            + _regex_error(_LABEL_KEY_ERR, _LABEL_KEY_FMT, "MyName", "my.name", "123-abc")
        )
    return errs


def is_label_value(value: str) -> list[str]:
    """The server's messages for a label value that is not valid (63 bytes at most)."""
    errs = []
    if _byte_len(value) > LABEL_VALUE_MAX_LENGTH:
        errs.append(_max_len_bytes(LABEL_VALUE_MAX_LENGTH))
    if not _LABEL_VALUE_RE.fullmatch(value):
        errs.append(
            _regex_error(_LABEL_VALUE_ERR, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345")
        )
    return errs


# --- the same checks, remembered ---------------------------------------------------------------

#: Strings longer than this are checked afresh each time: the longest valid label
#: key is a 253-byte prefix, "/" and a 63-byte name; anything longer is refused.
_REMEMBERED_LENGTH: Final = DNS1123_SUBDOMAIN_MAX_LENGTH + 1 + _LABEL_KEY_NAME_MAX_LENGTH
#: Distinct strings remembered per check: far more than the keys an object has.
_REMEMBERED: Final = 1024


def _remembered(check: Callable[[str], list[str]]) -> Callable[[str], tuple[str, ...]]:
    """``check`` with its answers for short strings kept (least recently used go first).

    Every write validates the same few label and annotation keys and data
    keys again (as the server does); the checks are pure functions of the
    string, so an answer can be reused. A tuple, so that no caller changes it.
    """
    cached = functools.lru_cache(maxsize=_REMEMBERED)(lambda value: tuple(check(value)))

    def remembered(value: str) -> tuple[str, ...]:
        if len(value) > _REMEMBERED_LENGTH:
            return tuple(check(value))
        return cached(value)

    return remembered


_qualified_name_messages = _remembered(is_qualified_name)
_label_value_messages = _remembered(is_label_value)
_configmap_key_messages = _remembered(is_configmap_key)


def _invalid(field: str, value: Any, detail: str) -> FieldError:
    return FieldError(ErrorType.INVALID, field, value, detail)


def _required(field: str, detail: str) -> FieldError:
    return FieldError(ErrorType.REQUIRED, field, "", detail)


def _too_long(field: str, max_length: int) -> FieldError:
    unit = "byte" if max_length == 1 else "bytes"
    return FieldError(
        ErrorType.TOO_LONG, field, "<value omitted>", f"may not be more than {max_length} {unit}"
    )


# --- metadata --------------------------------------------------------------------------------


def validate_labels(labels: Mapping[str, str], path: str = "metadata.labels") -> list[FieldError]:
    """``ValidateLabels``: each key a qualified name, each value a label value."""
    errs: list[FieldError] = []
    for key, value in labels.items():
        if _qualified_name_messages(key) or _label_value_messages(value):
            errs.extend(_invalid(path, key, msg) for msg in _qualified_name_messages(key))
            errs.extend(_invalid(path, value, msg) for msg in _label_value_messages(value))
    return errs


def validate_annotations(
    annotations: Mapping[str, str], path: str = "metadata.annotations"
) -> list[FieldError]:
    """``ValidateAnnotations``: keys are qualified names (checked lower-cased); 256 KiB in all."""
    errs: list[FieldError] = []
    for key in annotations:
        messages = _qualified_name_messages(key.lower())
        if messages:
            errs.extend(_invalid(path, key, msg) for msg in messages)
    if _annotations_size(annotations) > TOTAL_ANNOTATION_SIZE_LIMIT:
        errs.append(_too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT))
    return errs


def _annotations_size(annotations: Mapping[str, str]) -> int:
    """Go's ``len`` of every key and value, summed: UTF-8 bytes."""
    strings = [*annotations, *annotations.values()]
    # All ASCII (the usual case): a character is a byte, and no string is encoded.
    if "".join(strings).isascii():
        return sum(map(len, strings))
    return sum(map(_byte_len, strings))


# Grade C on purpose: ValidateOwnerReferences, rule by rule, in the server's order.
def validate_owner_references(
    refs: Sequence[OwnerReference], path: str = "metadata.ownerReferences"
) -> list[FieldError]:
    """``ValidateOwnerReferences``: each reference complete; at most one controller."""
    errs: list[FieldError] = []
    first_controller = ""
    for index, ref in enumerate(refs):
        at = f"{path}[{index}]"
        group, version, parsed = _parse_group_version(ref.api_version)
        if not ref.api_version:
            errs.append(_required(f"{at}.apiVersion", "must not be empty"))
        elif not parsed or not version:
            errs.append(
                _invalid(
                    f"{at}.apiVersion", ref.api_version, "must be <group>/<version> or <version>"
                )
            )
        if not ref.kind:
            errs.append(_required(f"{at}.kind", "must not be empty"))
        if not ref.name:
            errs.append(_required(f"{at}.name", "must not be empty"))
        if not ref.uid:
            errs.append(_required(f"{at}.uid", "must not be empty"))
        if (group, version, ref.kind) == ("", "v1", "Event"):
            errs.append(
                _invalid(at, ref.to_manifest(), "/v1, Kind=Event is disallowed from being an owner")
            )
        if ref.controller:
            current = f"{ref.kind}/{ref.name}"
            if first_controller:
                errs.append(
                    _invalid(
                        path,
                        [r.to_manifest() for r in refs],
                        "Only one reference can have Controller set to true. "
                        f'Found "true" in references for {first_controller} and {current}',
                    )
                )
            else:
                first_controller = current
    return errs


def _parse_group_version(value: str) -> tuple[str, str, bool]:
    # schema.ParseGroupVersion: (group, version, parsed without error).
    if value in ("", "/"):
        return "", "", True
    slashes = value.count("/")
    if slashes == 0:
        return "", value, True
    if slashes == 1:
        group, version = value.split("/")
        return group, version, True
    return "", "", False


def validate_object_meta(
    name: str,
    *,
    namespace: str,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    owner_references: Sequence[OwnerReference] = (),
) -> list[FieldError]:
    """``ValidateObjectMeta`` for a namespaced object whose name is a DNS-1123 subdomain."""
    errs = _name_errors(name)
    errs.extend(_namespace_errors(namespace))
    errs.extend(_common_meta_errors(labels, annotations, owner_references))
    return errs


def _name_errors(name: str) -> list[FieldError]:
    if not name:
        return [_required("metadata.name", "name or generateName is required")]
    return [_invalid("metadata.name", name, msg) for msg in is_dns1123_subdomain(name)]


def _namespace_errors(namespace: str) -> list[FieldError]:
    if not namespace:
        return [_required("metadata.namespace", "")]
    return [_invalid("metadata.namespace", namespace, m) for m in is_dns1123_label(namespace)]


def _common_meta_errors(
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    owner_references: Sequence[OwnerReference],
) -> list[FieldError]:
    return [
        *validate_labels(labels),
        *validate_annotations(annotations),
        *validate_owner_references(owner_references),
    ]


# --- the ConfigMap ---------------------------------------------------------------------------


def data_size(data: Mapping[str, str], binary_data: Mapping[str, bytes] | None = None) -> int:
    """The size the server limits: value bytes of data and binaryData; keys do not count."""
    total = sum(_byte_len(value) for value in data.values())
    if binary_data:
        total += sum(len(value) for value in binary_data.values())
    return total


def validate_configmap(
    name: str,
    *,
    namespace: str,
    data: Mapping[str, str],
    binary_data: Mapping[str, bytes] | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    owner_references: Sequence[OwnerReference] = (),
) -> list[FieldError]:
    """``ValidateConfigMap``: what the server checks when a ConfigMap is created.

    Returns:
        The field errors, in the server's order (data keys in the mapping's order,
        where the server's Go maps give a random one). Empty when the object is valid.
    """
    labels = labels or {}
    annotations = annotations or {}
    common = _common_meta_errors(labels, annotations, owner_references)
    return _configmap_errors(name, namespace, data, binary_data or {}, common)


def _configmap_errors(
    name: str,
    namespace: str,
    data: Mapping[str, str],
    binary_data: Mapping[str, bytes],
    common: list[FieldError],
) -> list[FieldError]:
    """``ValidateConfigMap``'s errors, given the common metadata's (``_common_meta_errors``)."""
    errs = _name_errors(name)
    errs.extend(_namespace_errors(namespace))
    errs.extend(common)
    for key in data:
        errs.extend(_invalid(f"data[{key}]", key, msg) for msg in _configmap_key_messages(key))
        if key in binary_data:
            errs.append(_invalid(f"data[{key}]", key, "duplicate of key present in binaryData"))
    for key in binary_data:
        errs.extend(
            _invalid(f"binaryData[{key}]", key, msg) for msg in _configmap_key_messages(key)
        )
    if data_size(data, binary_data) > MAX_CONFIGMAP_SIZE:
        # The server passes an empty path for "the whole object"; it prints as "[]".
        errs.append(_too_long("[]", MAX_CONFIGMAP_SIZE))
    return errs


def validate_configmap_update(
    name: str,
    *,
    namespace: str,
    data: Mapping[str, str],
    binary_data: Mapping[str, bytes] | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    owner_references: Sequence[OwnerReference] = (),
) -> list[FieldError]:
    """What the server checks when a ConfigMap is replaced (``rest.ValidateUpdate``).

    The name, namespace, uid and creation time cannot differ from the stored
    object's here (the store keeps them), so the immutability checks never fire.
    The server runs the metadata checks three times before ``ValidateConfigMap``
    (common fields, the update of the metadata, the ConfigMap's own update); the
    list has the repeats, which ``invalid`` drops as the server does, so the order
    of first appearance is the server's.
    """
    labels = labels or {}
    annotations = annotations or {}
    # Computed once: the checks are pure, and every write runs them.
    repeated = _common_meta_errors(labels, annotations, owner_references)
    full = _configmap_errors(name, namespace, data, binary_data or {}, repeated)
    return [*_namespace_errors(namespace), *repeated, *repeated, *repeated, *full]
