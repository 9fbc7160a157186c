"""Operator data: plans (``plans.json``) and models (``models.json``), read once as plain JSON."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources


@cache
def load(name: str) -> dict:
    return json.loads(resources.files(__name__).joinpath(name).read_text())
