"""docs/configuration.md lists every `shoal.*` key with its registered default, and
nothing else; its table of distributed twins names keys that exist. A new key needs a
row there (under "## Every key")."""

from __future__ import annotations

import math
import os
import re

from shoal.config import DEFAULTS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOC = open(os.path.join(ROOT, "docs", "configuration.md")).read()
ROW = re.compile(r"^\| `(shoal\.[a-z0-9.\-]+)` \| (.+?) \| (.+) \|$", re.M)


def leaves(node: dict, prefix: str) -> dict:
    out = {}
    for k, v in node.items():
        if isinstance(v, dict) and v:
            out.update(leaves(v, f"{prefix}.{k}"))
        else:
            out[f"{prefix}.{k}"] = v
    return out


def render(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    if isinstance(value, dict):
        return "{}" if not value else repr(value)
    return str(value)


DEFAULT_KEYS = leaves(DEFAULTS["shoal"], "shoal")
EVERY_KEY = DOC[DOC.index("## Every key") :]
DOCUMENTED = {key: (default, meaning) for key, default, meaning in ROW.findall(EVERY_KEY)}


def test_every_key_is_documented_and_nothing_else():
    missing = sorted(set(DEFAULT_KEYS) - set(DOCUMENTED))
    unknown = sorted(set(DOCUMENTED) - set(DEFAULT_KEYS))
    assert not missing, f"add these keys to docs/configuration.md: {missing}"
    assert not unknown, f"docs/configuration.md lists keys shoal does not have: {unknown}"


def test_documented_defaults_are_the_registered_ones():
    for key, (cell, meaning) in DOCUMENTED.items():
        assert meaning.strip(), key
        value = DEFAULT_KEYS[key]
        if isinstance(value, list):  # long lists are spelled out in a block below the table
            assert cell == "(the list below)", key
            block = EVERY_KEY.split(f"default of `{key}`", 1)[1].split("```")[1].split()
            assert block == [str(v) for v in value], key
        else:
            assert cell == f"`{render(value)}`", f"{key}: the doc says {cell}, the default is {value!r}"


def test_twins_table_names_existing_shoal_keys():
    table = DOC[DOC.index("## Settings written for distributed") : DOC.index("## What reaches your terminal")]
    rows = re.findall(r"^\| `(distributed\.[a-z0-9.\-]+)`.*\| `(shoal\.[a-z0-9.\-*]+)` \|$", table, re.M)
    assert len(rows) >= 8
    for twin, key in rows:
        assert twin.replace("distributed.", "shoal.", 1) in DEFAULT_KEYS or key.endswith(".*"), twin
        prefix = key.rstrip("*")
        assert any(k == key or k.startswith(prefix) for k in DEFAULT_KEYS), key


def test_readme_links_the_reference():
    assert "docs/configuration.md" in open(os.path.join(ROOT, "README.md")).read()
