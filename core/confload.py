"""A strict YAML-to-dataclass loader.

`load(cls, path, overrides)` reads a YAML file (following its `extends:` chain
of base files), applies `dotted.key=value` overrides, and builds the typed
dataclass `cls`. Every error is a `ConfigError` naming the file (or the
`--set` override) the offending value came from and the dotted key, for
example ``conf/local.yaml: filters[1].min_chars: expected int, got 'ten'``.

Supported field types: str, int, float, bool, Optional[...], Literal[...],
list[...], dict[str, ...], nested dataclasses, and open tagged unions: a
dataclass base with a class attribute `__registry__` (e.g. a filter's conf
spec) stands for whichever registered subclass its tag field (`__tag__`,
default `rule`) names; the subclasses come from the `registries` the caller
passes (`{"filters": {"language": LanguageFilter, ...}}`), so the loader
knows no filter. A string field with ``metadata={"registry": "formats"}`` must
be a key of that registry. Range checks come from field metadata:
``field(default=0, metadata={"min": 0, "max": 1})``. A dataclass may define
``validate(self)`` raising `ConfigError(key, message)` for checks across
fields; the key is relative to that dataclass.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Union

import yaml

from instructlake.core.errors import ConfigError

OVERRIDE_ORIGIN = "--set"
Registries = Mapping[str, Mapping[str, Any]]


def _join(prefix: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    return f"{prefix}.{key}" if prefix else str(key)


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("", "configuration file not found", str(path)) from None
    except OSError as e:
        raise ConfigError("", f"cannot read configuration file: {e}", str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError("", f"not valid YAML: {e}", str(path)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("", f"expected a mapping at the top, got {type(data).__name__}", str(path))
    return data


def _record_origins(data: Any, prefix: str, origin: str, origins: dict[str, str]) -> None:
    origins[prefix] = origin
    if isinstance(data, dict):
        for k, v in data.items():
            _record_origins(v, _join(prefix, k), origin, origins)
    elif isinstance(data, list):
        for i, v in enumerate(data):
            _record_origins(v, _join(prefix, i), origin, origins)


def _forget(origins: dict[str, str], key: str) -> None:
    """Drop the recorded origins of `key` and everything below it."""
    for old in [o for o in origins if o == key or o.startswith(key + ".") or o.startswith(key + "[")]:
        del origins[old]


def _merge(base: dict, over: dict, prefix: str, origin: str, origins: dict[str, str]) -> dict:
    """Deep-merge `over` into a copy of `base`; mappings merge, everything else replaces."""
    out = dict(base)
    for k, v in over.items():
        key = _join(prefix, k)
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            origins[key] = origin
            out[k] = _merge(out[k], v, key, origin, origins)
        else:
            out[k] = v
            _forget(origins, key)
            _record_origins(v, key, origin, origins)
    return out


def read_layers(path: str | Path, origins: dict[str, str], _seen: tuple = (), layers: list | None = None) -> dict:
    """Read a YAML file and the chain of files it `extends`, merged base-first. `layers`, when
    given, gets (file, its own data) for each file of the chain, base first."""
    path = Path(path)
    if path.resolve() in _seen:
        raise ConfigError("extends", "circular extends chain", str(path))
    data = _read_yaml(path)
    parent = data.pop("extends", None)
    if parent is None:
        base: dict = {}
    elif not isinstance(parent, str):
        raise ConfigError("extends", "expected a file name", str(path))
    else:
        base = read_layers(path.parent / parent, origins, _seen + (path.resolve(),), layers)
    if layers is not None:
        layers.append((str(path), data))
    return _merge(base, data, "", str(path), origins)


def apply_override(data: dict, assignment: str, origins: dict[str, str], cls: type | None = None,
                   registries: Registries | None = None) -> dict:
    """Apply one `dotted.key=value` override.

    List items are addressed by index or by their `name` (or `rule`); inside a
    free-form mapping of the schema (a `dict[str, ...]` field such as Spark
    options) the rest of the dotted key is one key: `spark.options.spark.executor.memory=2g`.
    """
    if "=" not in assignment:
        raise ConfigError(assignment, "override must look like dotted.key=value", OVERRIDE_ORIGIN)
    dotted, raw = assignment.split("=", 1)
    parts = dotted.strip().split(".")
    if not all(parts):
        raise ConfigError(dotted, "empty key segment in override", OVERRIDE_ORIGIN)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(dotted, f"value is not valid YAML: {e}", OVERRIDE_ORIGIN) from None
    node: Any = data
    tp: Any = cls
    prefix = ""
    i = 0
    while i < len(parts):
        part = parts[i]
        if _is_mapping_type(tp):
            part = ".".join(parts[i:])
            i = len(parts) - 1
        last = i == len(parts) - 1
        if isinstance(node, list):
            key: Any = _list_index(node, part, prefix)
        elif isinstance(node, dict):
            key = part
        else:
            raise ConfigError(prefix, f"cannot set '{part}' inside a {type(node).__name__}", OVERRIDE_ORIGIN)
        path_key = _join(prefix, key)
        if last:
            node[key] = value
            _forget(origins, path_key)
            _record_origins(value, path_key, OVERRIDE_ORIGIN, origins)
        else:
            if isinstance(node, dict) and key not in node:
                node[key] = {}
            tp = _child_type(tp, key, node[key], registries or {})
            node = node[key]
        prefix = path_key
        i += 1
    return data


def _is_mapping_type(tp: Any) -> bool:
    return typing.get_origin(tp) is dict


def _registry_of(tp: Any) -> str | None:
    """The registry name of an open tagged union's base dataclass (the class that declares
    `__registry__`, not a subclass of it), else None."""
    return vars(tp).get("__registry__") if dataclasses.is_dataclass(tp) and isinstance(tp, type) else None


def _variant(tp: Any, value: Any, registries: Registries) -> Any:
    """The registered subclass of `tp` that the tag of `value` names, or None."""
    tag = getattr(tp, "__tag__", "rule")
    if isinstance(value, dict):
        return _registry(tp, registries).get(value.get(tag))
    return None


def _registry(tp: Any, registries: Registries) -> Mapping[str, Any]:
    name = _registry_of(tp)
    if name not in registries:
        raise TypeError(f"loading {tp.__name__} needs the {name!r} registry")
    return registries[name]


def _child_type(tp: Any, key: Any, child: Any, registries: Registries) -> Any:
    """The schema type of `child`, found under `key` in a node of type `tp`; None when unknown (then
    no mapping rule applies). A list item of an open tagged union is the variant its tag names."""
    if tp is None:
        return None
    if typing.get_origin(tp) in (Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(options) != 1:
            return None
        tp = options[0]
    if dataclasses.is_dataclass(tp):
        return typing.get_type_hints(tp).get(key)
    if typing.get_origin(tp) is list:
        inner = typing.get_args(tp)[0]
        return _variant(inner, child, registries) if _registry_of(inner) else inner
    if typing.get_origin(tp) is dict:
        return typing.get_args(tp)[1]
    return None


def _list_index(node: list, part: str, prefix: str) -> int:
    if part.lstrip("-").isdigit():
        idx = int(part)
        if not -len(node) <= idx < len(node):
            raise ConfigError(_join(prefix, idx), f"index out of range (the list has {len(node)} items)", OVERRIDE_ORIGIN)
        return idx % len(node)
    for idx, item in enumerate(node):
        if isinstance(item, dict) and part in (item.get("name"), item.get("rule")):
            return idx
    raise ConfigError(_join(prefix, part), "no list item has this name", OVERRIDE_ORIGIN)


@dataclass
class Loaded:
    """A loaded conf object, where each key's value came from (file or `--set`), and the files of
    the `extends` chain with their own data, base first."""

    value: Any
    origins: dict[str, str] = field(default_factory=dict)
    layers: list[tuple[str, dict]] = field(default_factory=list)


def load_layers(cls: type, path: str | Path, overrides: list[str] | None = None,
                registries: Registries | None = None) -> Loaded:
    origins: dict[str, str] = {}
    layers: list[tuple[str, dict]] = []
    data = read_layers(path, origins, layers=layers)
    for assignment in overrides or []:
        data = apply_override(data, assignment, origins, cls, registries)
    return Loaded(build(cls, data, origins, registries=registries), origins, layers)


def load(cls: type, path: str | Path, overrides: list[str] | None = None, registries: Registries | None = None) -> Any:
    return load_layers(cls, path, overrides, registries).value


def build(cls: type, data: Any, origins: dict[str, str] | None = None, prefix: str = "",
          registries: Registries | None = None) -> Any:
    """Build `cls` from plain data; errors name the key and where it came from."""
    origins = origins or {}
    try:
        return _convert(cls, data, prefix, registries or {})
    except ConfigError as e:
        if e.origin is None:
            e = ConfigError(e.key, e.message, origin_of(e.key, origins))
        raise e from None


def origin_of(key: str, origins: dict[str, str]) -> str | None:
    """The file (or `--set`) that set `key`, or the nearest key above it."""
    probe = key
    while probe:
        if probe in origins:
            return origins[probe]
        cut = max(probe.rfind("."), probe.rfind("["))
        probe = probe[:cut] if cut > 0 else ""
    return next(iter(origins.values()), None) if origins else None


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _convert(tp: Any, value: Any, key: str, registries: Registries) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        return _convert_union(args, value, key, registries)
    if origin is Literal:
        if value not in args:
            raise ConfigError(key, f"expected one of {', '.join(repr(a) for a in args)}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(key, f"expected a list, got {type(value).__name__}")
        return [_convert(args[0], v, _join(key, i), registries) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected a mapping, got {type(value).__name__}")
        return {str(k): _convert(args[1], v, _join(key, str(k)), registries) for k, v in value.items()}
    if _registry_of(tp):
        return _convert_tagged(tp, value, key, registries)
    if dataclasses.is_dataclass(tp):
        return _convert_dataclass(tp, value, key, registries)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported configuration type {tp!r} at {key}")


def _convert_tagged(base: type, value: Any, key: str, registries: Registries) -> Any:
    """An open tagged union: the registered subclass of `base` its tag names."""
    tag = getattr(base, "__tag__", "rule")
    if not isinstance(value, dict):
        raise ConfigError(key, f"expected a mapping with a {tag!r} key, got {type(value).__name__}")
    variants = _registry(base, registries)
    if value.get(tag) not in variants:
        raise ConfigError(_join(key, tag), f"expected one of {', '.join(repr(r) for r in variants)}, got {value.get(tag)!r}")
    return _convert_dataclass(variants[value[tag]], value, key, registries)


def _convert_union(args: tuple, value: Any, key: str, registries: Registries) -> Any:
    if value is None:
        if type(None) in args:
            return None
        raise ConfigError(key, "a value is required here, got null")
    options = [a for a in args if a is not type(None)]
    if len(options) == 1:
        return _convert(options[0], value, key, registries)
    for opt in options:
        try:
            return _convert(opt, value, key, registries)
        except ConfigError:
            continue
    raise ConfigError(key, f"expected {' or '.join(_type_name(o) for o in options)}, got {value!r}")


def _convert_dataclass(cls: type, value: Any, key: str, registries: Registries) -> Any:
    if not isinstance(value, dict):
        raise ConfigError(key, f"expected a mapping, got {type(value).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for k in value:
        if k not in fields:
            close = difflib.get_close_matches(str(k), list(fields), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(_join(key, str(k)), f"unknown key{hint}; known keys: {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        sub = _join(key, name)
        if name in value:
            v = _convert(hints[name], value[name], sub, registries)
            _check_range(f, v, sub)
            _check_registered(f, v, sub, registries)
            kwargs[name] = v
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(sub, "required key is missing")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        try:
            validate()
        except ConfigError as e:
            raise ConfigError(_join(key, e.key) if e.key else key, e.message) from None
    return obj


def _check_range(f: dataclasses.Field, v: Any, key: str) -> None:
    lo, hi = f.metadata.get("min"), f.metadata.get("max")
    if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
        return
    if lo is not None and v < lo:
        raise ConfigError(key, f"must be >= {lo}, got {v}")
    if hi is not None and v > hi:
        raise ConfigError(key, f"must be <= {hi}, got {v}")


def _check_registered(f: dataclasses.Field, v: Any, key: str, registries: Registries) -> None:
    name = f.metadata.get("registry")
    if name is None or v is None:
        return
    if name not in registries:
        raise TypeError(f"loading {key} needs the {name!r} registry")
    if v not in registries[name]:
        raise ConfigError(key, f"expected one of {', '.join(repr(k) for k in registries[name])}, got {v!r}")


def to_dict(obj: Any) -> Any:
    """Plain data of a config dataclass (for the manifest and hashing)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
