"""YAML / JSON files of pydantic models (plans, laws): one reader, one writer, one-line errors.

Files are typed by hand, so YAML's `1e18` (no dot; a string in YAML 1.1) reads as the number it means. Hand edits go
wrong in ways a loader must not paper over: a key given twice (the last silently winning) is refused with both lines;
aliases (`*name`, the billion-laughs expansion) are refused; `true` is not the number 1 and "5" is not 5 (`Int`,
`Real`); documents nested past Python's recursion limit, integers past Python's digit limit and binary values
(`!!binary`, which no field takes) are refused in one line.
"""
from __future__ import annotations

import json
import re
import stat
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, BeforeValidator, ValidationError

from planner.errors import PlannerInputError


class _Refused(yaml.MarkedYAMLError):
    """A document this loader refuses (duplicate key, alias); the message carries the line."""


class _Loader(yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader):  # libyaml: ~10x faster
    def construct_document(self, node):
        _refuse_aliases(node)
        return super().construct_document(node)

    def construct_mapping(self, node, deep=False):
        first: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in first:
                    raise _Refused(problem=f"line {line}: duplicate key {key!r} (first on line {first[key]})",
                                   problem_mark=key_node.start_mark)
                first[key] = line
            except TypeError:  # an unhashable key: the base constructor reports it
                pass
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node):
        try:
            return super().construct_yaml_int(node)
        except ValueError:  # past sys.get_int_max_str_digits(): no plan field is anywhere near
            raise _Refused(problem=f"line {node.start_mark.line + 1}: an integer of {len(node.value):,} characters "
                                   f"is too long to be a value", problem_mark=node.start_mark) from None

    def construct_binary(self, node):
        raise _Refused(problem=f"line {node.start_mark.line + 1}: the tag {node.tag.replace('tag:yaml.org,2002:', '!!')}"
                               f" is not accepted (plans hold text and numbers)", problem_mark=node.start_mark)


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)
_Loader.add_constructor("tag:yaml.org,2002:binary", _Loader.construct_binary)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def _refuse_aliases(root) -> None:
    """An alias makes the composed graph share a node; plans never need one, and an alias bomb expands to billions
    of values in validation. Iterative, so a deep document cannot overflow the stack here."""
    seen, stack = set(), [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            mark = node.start_mark
            raise _Refused(problem=f"aliases (*name) are not accepted (the anchor &name is on line {mark.line + 1})",
                           problem_mark=mark)
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            stack.extend(n for pair in node.value for n in pair)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def fmt_of(path: str | Path) -> str:
    return "json" if Path(path).suffix.lower() == ".json" else "yaml"


def to_text(model: BaseModel, fmt: str = "yaml") -> str:
    data = model.model_dump(mode="json")
    return json.dumps(data, indent=2) if fmt == "json" else yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _json_object(pairs):
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """'line N: what' from a PyYAML error (its own text spreads over several lines)."""
    mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None)
    if isinstance(exc, _Refused):
        return problem
    if mark is not None and problem:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def parse_mapping(text: str, source: str, fmt: str, what: str) -> dict:
    """The mapping a YAML/JSON text holds; PlannerInputError naming `source` otherwise."""
    try:
        data = json.loads(text, object_pairs_hook=_json_object) if fmt == "json" else yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise PlannerInputError(f"{source}: not valid YAML: {_yaml_problem(exc)}") from None
    except json.JSONDecodeError as exc:
        raise PlannerInputError(f"{source}: not valid JSON: {str(exc).splitlines()[0]}") from None
    except ValueError as exc:  # a duplicate key, or an integer past Python's digit limit
        digits = re.search(r"value has (\d+) digits", str(exc))
        why = f"an integer of {digits[1]} digits is too long to be a value" if digits else str(exc).splitlines()[0]
        raise PlannerInputError(f"{source}: {why}") from None
    except RecursionError:
        raise PlannerInputError(f"{source}: nested too deeply to be a {what}") from None
    if not isinstance(data, dict):
        raise PlannerInputError(f"{source}: a {what} is a mapping of fields, got {type(data).__name__}")
    return data


def validate(cls: type[BaseModel], data: dict, source: str):
    """cls.model_validate(data), with the first error as one line naming the source and the field."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        e = exc.errors()[0]
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = " ".join(e["msg"].removeprefix("Value error, ").split())
        raise PlannerInputError(f"{source}: field '{where}': {msg}") from None
    except RecursionError:
        raise PlannerInputError(f"{source}: nested too deeply to be a {cls.__name__}") from None


def number_only(value):
    """Refuse what lax validation would coerce into a number: booleans and strings ('5', 'nan')."""
    if isinstance(value, (bool, str, bytes)):
        raise ValueError(f"expected a number, got {type(value).__name__} {value!r:.40}")
    return value


Int = Annotated[int, BeforeValidator(number_only)]  # an integer field: 1e18 (a float that is whole) reads fine
Real = Annotated[float, BeforeValidator(number_only)]  # a float field; finiteness is the model config's job


MAX_FILE_BYTES = 16 * 2**20  # plans and laws are a few kB; a larger "plan" is a mistake, not something to load


def not_regular(mode: int) -> str:
    """What a non-regular st_mode is, in words (a FIFO would block a read, a device never end it)."""
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def read_text(path: str | Path, what: str) -> str:
    path = Path(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise PlannerInputError(f"{path}: is {not_regular(info.st_mode)}, not a {what} file")
        if info.st_size > MAX_FILE_BYTES:
            raise PlannerInputError(f"{path}: {info.st_size / 2**20:.0f} MiB is too large for a {what} file")
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlannerInputError(f"{path}: no such {what} file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PlannerInputError(f"{path}: cannot read {what}: {exc}") from None


def write_model(model: BaseModel, path: str | Path) -> Path:
    """Write YAML or JSON by the file's suffix (.json is JSON, anything else YAML)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_text(model, fmt_of(path)), encoding="utf-8")
    return path
