"""The gym's own data files (written for OpenK2, Apache-2.0), read with their line numbers in errors."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any


@cache
def gym_data(name: str, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    """The records of `openk2/gym/data/<name>`; a record without one of `fields` names its line."""
    text = resources.files("openk2.gym").joinpath(f"data/{name}").read_text()
    records = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        record = json.loads(line)
        missing = [field for field in fields if field not in record]
        if missing:
            raise ValueError(f"openk2/gym/data/{name}:{line_number}: missing {', '.join(missing)}")
        records.append(record)
    return records
