"""docs/settings.md is the settings' schema, rendered: never stale, nothing unexplained."""

from __future__ import annotations

from etlstack.settings_doc import markdown
from tests.support.stacks import PROJECT_ROOT

REFERENCE = PROJECT_ROOT / "docs" / "settings.md"


def test_the_settings_reference_is_what_the_schema_generates() -> None:
    assert REFERENCE.read_text() == markdown(), (
        "docs/settings.md is stale: run make settings-doc and commit it"
    )


def test_every_setting_says_what_it_means() -> None:
    # The settings' tables have four columns: key, type, default, meaning.
    rows = [line for line in markdown().splitlines() if line.startswith("| `")]
    rows = [row for row in rows if len(row.split("|")) == 6]
    assert len(rows) > 40
    unexplained = [row.split("|")[1].strip() for row in rows if not row.split("|")[4].strip()]
    assert unexplained == []
