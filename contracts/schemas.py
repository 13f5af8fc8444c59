"""JSON Schema export of every event, for the systems that publish to us."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from contracts.envelope import CloudEvent
from contracts.events import EVENT_MODELS


def event_schemas() -> dict[str, dict[str, Any]]:
    """One JSON Schema per event type: the envelope with that event's ``data``."""
    envelope = CloudEvent.model_json_schema()
    schemas = {}
    for name, model in EVENT_MODELS.items():
        data_schema = model.model_json_schema(ref_template="#/$defs/{model}")
        defs = data_schema.pop("$defs", {})
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": name,
            "type": "object",
            "properties": {**envelope["properties"], "type": {"const": name}, "data": data_schema},
            "required": sorted(set(envelope.get("required", [])) | {"data"}),
        }
        if defs:
            schema["$defs"] = defs
        schemas[name] = schema
    return schemas


def export_json_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in event_schemas().items():
        path = directory / f"{name}.schema.json"
        path.write_text(json.dumps(schema, indent=2) + "\n")
        written.append(path)
    return written
