"""Keys: Python dicts ↔ the proto ``Key`` and the column forms, decided in
this one module (the TypeScript SDK's keys.ts).

To the wire: an ``int`` (or any integral number such as numpy.int64, but not
a bool) is an int64; a ``float`` (finite) is a double; a ``str`` is a string;
a ``bool`` is a bool. Anything else (None, NaN, dates, lists) is an
InvalidArgumentError that names the attribute.

From the wire: int64 → int, double → float, string → str, bool → bool.
Keys come back as dicts with their attributes in name order.
"""

from __future__ import annotations

import json
import math
import numbers
from typing import Any, Iterable, Mapping

from populus.errors import InvalidArgumentError
from populus.v1 import types_pb2

KEYS_PER_CALL = 10_000
"""Keys per Refresh, Ignore, DeleteJobs and DeleteTargets call: the server's limit."""

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

_INT64, _DOUBLE, _STRING, _BOOL = "int64", "double", "string", "bool"

_ATTRIBUTE_TYPE = {
    _INT64: types_pb2.ATTRIBUTE_TYPE_INT64,
    _DOUBLE: types_pb2.ATTRIBUTE_TYPE_DOUBLE,
    _STRING: types_pb2.ATTRIBUTE_TYPE_STRING,
    _BOOL: types_pb2.ATTRIBUTE_TYPE_BOOL,
}


def _kind_of(attribute: str, v: Any) -> str:
    """The wire type of one attribute value; InvalidArgumentError naming ``attribute`` for anything else."""
    if isinstance(v, bool):
        return _BOOL
    if isinstance(v, numbers.Integral):
        if not _INT64_MIN <= int(v) <= _INT64_MAX:
            raise InvalidArgumentError(f'key attribute "{attribute}": {v} does not fit in int64')
        return _INT64
    if isinstance(v, numbers.Real):
        if not math.isfinite(float(v)):
            raise InvalidArgumentError(f'key attribute "{attribute}": {v} is not a finite number')
        return _DOUBLE
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidArgumentError(f'key attribute "{attribute}": the string has a lone surrogate (no UTF-8 form)') from None
        return _STRING
    raise InvalidArgumentError(
        f'key attribute "{attribute}": {"None" if v is None else type(v).__name__} is not a key value; use an int, float, str or bool'
    )


def _check_record(key: Any) -> Mapping[str, Any]:
    if not isinstance(key, Mapping):
        raise InvalidArgumentError(f"a key must be a dict of attribute values, e.g. {{'id': 3}}; got {_describe(key)}")
    if len(key) == 0:
        raise InvalidArgumentError("a key must have at least one attribute, e.g. {'id': 3}")
    for name in key:
        if not isinstance(name, str):
            raise InvalidArgumentError(f"key attribute names must be strings, got {name!r}")
    return key


def to_proto_value(attribute: str, v: Any) -> types_pb2.Value:
    """The proto Value of one attribute; InvalidArgumentError naming ``attribute``."""
    kind = _kind_of(attribute, v)
    if kind == _INT64:
        return types_pb2.Value(int_value=int(v))
    if kind == _DOUBLE:
        return types_pb2.Value(double_value=float(v))
    if kind == _STRING:
        return types_pb2.Value(string_value=v)
    return types_pb2.Value(bool_value=v)


def to_proto_key(key: Any) -> types_pb2.Key:
    """The proto Key of a key dict; InvalidArgumentError for a non-dict or a bad attribute."""
    record = _check_record(key)
    return types_pb2.Key(attributes={name: to_proto_value(name, v) for name, v in record.items()})


def to_restriction(restriction: Mapping[str, Any] | None) -> dict[str, types_pb2.Value]:
    """The restriction map (attribute → Value) of a dict of attribute values."""
    if restriction is None:
        return {}
    if not isinstance(restriction, Mapping):
        raise InvalidArgumentError(f"a restriction must be a dict of attribute values, e.g. {{'subject_id': 2}}; got {_describe(restriction)}")
    return {name: to_proto_value(name, v) for name, v in restriction.items()}


def from_proto_value(v: types_pb2.Value) -> Any:
    """The Python value of a proto Value."""
    kind = v.WhichOneof("kind")
    if kind is None:
        raise InvalidArgumentError("the server sent a key attribute with no value")
    return getattr(v, kind)


def from_proto_key(key: types_pb2.Key) -> dict[str, Any]:
    """The key dict of a proto Key, attributes in name order."""
    return {name: from_proto_value(key.attributes[name]) for name in sorted(key.attributes)}


def from_keys_json(text: str, key_attributes: Iterable[types_pb2.KeyAttribute]) -> list[dict[str, Any]]:
    """Keys sent as the text of one JSON array (LeaseColumns.keys_json): int64
    attributes come as decimal strings and become ints."""
    keys = json.loads(text)
    if not isinstance(keys, list):
        raise InvalidArgumentError("the server sent keys_json that is not a JSON array")
    int64 = [a.name for a in key_attributes if a.type == types_pb2.ATTRIBUTE_TYPE_INT64]
    for key in keys:
        for name in int64:
            key[name] = int(key[name])
    return keys


class RefreshKeys:
    """One Refresh call's keys, taken one by one: in columns (keys_json with
    key_attributes) while they share the first key's attributes and types, one
    JSON text for the server instead of a Key message per key; as Key messages
    when they do not (the server then names the key that does not match)."""

    def __init__(self) -> None:
        self._keys: list[Mapping[str, Any]] = []
        self._texts: list[str] = []
        self._names: list[str] | None = None
        self._kinds: list[str] = []
        self._messages: list[types_pb2.Key] | None = None

    def __len__(self) -> int:
        return len(self._messages) if self._messages is not None else len(self._texts)

    def add(self, key: Any) -> None:
        """Adds a key; InvalidArgumentError for a key that is no key at all."""
        record = _check_record(key)
        if self._messages is None:
            text = self._column_text(record)
            if text is not None:
                self._keys.append(record)
                self._texts.append(text)
                return
            self._messages = [to_proto_key(k) for k in self._keys]
        self._messages.append(to_proto_key(record))

    def _column_text(self, record: Mapping[str, Any]) -> str | None:
        if self._names is None:
            self._names = sorted(record)
            self._kinds = [_kind_of(name, record[name]) for name in self._names]
        if len(record) != len(self._names):
            return None
        members = []
        for name, kind in zip(self._names, self._kinds):
            if name not in record:
                return None
            v = record[name]
            if _kind_of(name, v) != kind:
                return None
            if kind == _INT64:
                text = f'"{int(v)}"'
            elif kind == _BOOL:
                text = "true" if v else "false"
            elif kind == _DOUBLE:
                text = json.dumps(float(v))
            else:
                text = json.dumps(v, ensure_ascii=False)
            members.append(f"{json.dumps(name)}:{text}")
        return "{" + ",".join(members) + "}"

    def fields(self) -> dict[str, Any]:
        """The RefreshRequest fields of this call's keys."""
        if self._messages is not None or self._names is None:
            return {"keys": self._messages or []}
        return {
            "keys_json": "[" + ",".join(self._texts) + "]",
            "key_attributes": [types_pb2.KeyAttribute(name=n, type=_ATTRIBUTE_TYPE[k]) for n, k in zip(self._names, self._kinds)],
        }


def key_chunks(keys: Iterable[Any]) -> Iterable[list[types_pb2.Key]]:
    """``keys`` as proto keys in lists of at most KEYS_PER_CALL."""
    chunk: list[types_pb2.Key] = []
    for key in keys:
        chunk.append(to_proto_key(key))
        if len(chunk) == KEYS_PER_CALL:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _describe(v: Any) -> str:
    if v is None:
        return "None"
    return repr(v) if isinstance(v, str) else f"{type(v).__name__} {v!r}"
