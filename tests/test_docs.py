"""The docs stay true to the code: every setting documented, the README opening with the two commands."""

from __future__ import annotations

from pathlib import Path

from sensorcloud.core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_is_documented() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    missing = [name for name in Settings.model_fields if f"`SENSORCLOUD_{name.upper()}`" not in text]
    assert missing == []


def test_readme_opens_with_the_two_commands() -> None:
    head = (ROOT / "README.md").read_text().split("\n## ")[0]
    assert "make up" in head
    assert "make test" in head
