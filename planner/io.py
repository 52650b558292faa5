"""YAML / JSON files of pydantic models (plans, laws): one reader, one writer, one-line errors.

Files are typed by hand, so YAML's `1e18` (no dot; a string in YAML 1.1) reads as the number it means.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from planner.errors import PlannerInputError


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def fmt_of(path: str | Path) -> str:
    return "json" if Path(path).suffix.lower() == ".json" else "yaml"


def to_text(model: BaseModel, fmt: str = "yaml") -> str:
    data = model.model_dump(mode="json")
    return json.dumps(data, indent=2) if fmt == "json" else yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def parse_mapping(text: str, source: str, fmt: str, what: str) -> dict:
    """The mapping a YAML/JSON text holds; PlannerInputError naming `source` otherwise."""
    try:
        data = json.loads(text) if fmt == "json" else yaml.load(text, Loader=_Loader)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise PlannerInputError(f"{source}: not valid {fmt.upper()}: {first}") from None
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
        raise PlannerInputError(f"{source}: field '{where}': {e['msg'].removeprefix('Value error, ')}") from None


def read_text(path: str | Path, what: str) -> str:
    path = Path(path)
    try:
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
