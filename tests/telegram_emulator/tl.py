"""TL plumbing shared by the emulated server and sender: building and round-tripping objects.

Every TL constructor the emulator returns is built through :func:`make`, which fills the required
fields a newer layer added with neutral values (0, "", b"", False, [], an "Empty" constructor), so
a Telethon upgrade that grows a constructor does not break the emulator in a hundred places.
Everything that crosses between client and server is serialized to bytes and read back with
Telethon's own ``BinaryReader``: the two sides never share an object and the schema is checked.
"""

from __future__ import annotations

import datetime
import functools
import inspect
import typing
import zlib
from typing import Any, TypeVar

from telethon.extensions import BinaryReader
from telethon.tl import TLObject
from telethon.tl.alltlobjects import tlobjects

T = TypeVar("T", bound=TLObject)

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_BOOL_TRUE = 0x997275B5
_BOOL_FALSE = 0xBC799737
_VECTOR = 0x1CB5C415


class RpcFailure(Exception):
    """An RPC error the server answers with; the sender turns it into Telethon's own error
    class through ``rpc_message_to_error``, exactly as the real sender does."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


def make(cls: type[T], **fields: Any) -> T:
    """Build ``cls`` from ``fields``, giving every omitted required field a neutral value."""
    for name, annotation in _required_fields(cls):
        if name not in fields:
            fields[name] = _neutral(annotation, depth=0)
    return cls(**fields)


def to_datetime(timestamp: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)


def roundtrip(obj: TLObject) -> TLObject:
    """A fresh copy of ``obj`` read back from its wire bytes (no shared state, schema checked)."""
    return read_object(bytes(obj))


def read_object(data: bytes) -> Any:
    with BinaryReader(data) as reader:
        obj = reader.tgread_object()
        _expect_consumed(reader, data, obj)
    return obj


def read_result(request: TLObject, data: bytes) -> Any:
    """Read a result the way the real sender does: with the request's own ``read_result``."""
    with BinaryReader(data) as reader:
        result = request.read_result(reader)
        _expect_consumed(reader, data, result)
    return result


def serialize_result(value: Any) -> bytes:
    """Wire bytes of a request's result: a TL object, a Bool, or a vector of TL objects."""
    if isinstance(value, bool):
        return (_BOOL_TRUE if value else _BOOL_FALSE).to_bytes(4, "little")
    if isinstance(value, TLObject):
        return bytes(value)
    if isinstance(value, list):
        if not all(isinstance(item, TLObject) for item in value):
            raise TypeError("only vectors of TL objects are supported as results")
        return b"".join([_VECTOR.to_bytes(4, "little"), len(value).to_bytes(4, "little"),
                         *(bytes(item) for item in value)])
    raise TypeError(f"cannot serialize result {value!r}")


def _expect_consumed(reader: BinaryReader, data: bytes, obj: Any) -> None:
    if reader.tell_position() != len(data):
        raise ValueError(f"{type(obj).__name__}: {len(data) - reader.tell_position()} bytes "
                         "left unread; client and server disagree on the schema")


@functools.cache
def _required_fields(cls: type) -> tuple[tuple[str, Any], ...]:
    # Telethon patches Message, MessageService and MessageEmpty with its own friendlier
    # constructor (everything optional); the generated TL class still says what is required.
    generated = next((c for c in cls.__mro__ if "__init__" in vars(c)
                      and c.__module__.startswith("telethon.tl.types")), cls)
    plain = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    required: dict[str, Any] = {}
    for constructor in (generated, cls):
        for p in inspect.signature(constructor.__init__).parameters.values():
            # Telethon's generator defaults every ``random_id`` to a random *int*, which cannot
            # serialize where the schema says bytes (SponsoredMessage): treat it as required.
            bytes_random_id = p.name == "random_id" and p.annotation is bytes
            if p.name != "self" and p.kind in plain and (
                    p.default is inspect.Parameter.empty or bytes_random_id):
                required.setdefault(p.name, p.annotation)
    return tuple(required.items())


@functools.cache
def _constructors_by_type() -> dict[int, list[type]]:
    groups: dict[int, list[type]] = {}
    for cls in tlobjects.values():
        if not cls.__name__.endswith("Request"):
            groups.setdefault(cls.SUBCLASS_OF_ID, []).append(cls)
    return groups


@functools.cache
def _namespaces() -> tuple[str, ...]:
    found = {cls.__module__.rsplit(".", 1)[-1] for cls in tlobjects.values()}
    return tuple(sorted(found - {"types", "functions"}))


@functools.cache
def _constructor_for(type_name: str) -> type:
    """The most neutral constructor of the abstract TL type ``type_name`` (e.g. ``ChatPhoto``)."""
    groups = _constructors_by_type()
    for name in (type_name, *(f"{ns}.{type_name}" for ns in _namespaces())):
        candidates = groups.get(zlib.crc32(name.encode()))
        if candidates:
            # "...Empty" constructors exist for exactly this purpose; otherwise the simplest one.
            return min(candidates, key=lambda c: (not c.__name__.endswith("Empty"),
                                                  len(_required_fields(c)), c.__name__))
    raise TypeError(f"unknown TL type {type_name}")


def _neutral(annotation: Any, depth: int) -> Any:
    if depth > 8:
        raise TypeError("TL neutral value recursion too deep")
    if isinstance(annotation, typing.ForwardRef):
        annotation = annotation.__forward_arg__
    if isinstance(annotation, str):
        name = annotation.strip("'\"")
        return _neutral_object(_constructor_for(name.removeprefix("Type")), depth)
    origin = typing.get_origin(annotation)
    if origin is list:
        return []
    if origin is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if args == [datetime.datetime]:
            return EPOCH
        return _neutral(args[0], depth + 1)
    simple = {int: 0, float: 0.0, str: "", bytes: b"", bool: False, datetime.datetime: EPOCH}
    if annotation in simple:
        return simple[annotation]
    if isinstance(annotation, type) and issubclass(annotation, TLObject):
        return _neutral_object(annotation, depth)
    raise TypeError(f"no neutral value for {annotation!r}")


def _neutral_object(cls: type, depth: int) -> TLObject:
    return cls(**{name: _neutral(annotation, depth + 1)
                  for name, annotation in _required_fields(cls)})
