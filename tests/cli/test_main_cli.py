"""The top-level ``convpress`` parser."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import convpress
from convpress.cli.main import main
from convpress.core.cpu import BF16_ENV, KEEP_MEMORY_ENV
from convpress.core.memory import ENV_LIMIT


def test_help_names_every_environment_variable_the_package_reads(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "environment:" in text
    package = Path(convpress.__file__).parent
    read = {m for f in package.rglob("*.py") for m in re.findall(r"CONVPRESS_[A-Z0-9_]+", f.read_text())}
    assert {ENV_LIMIT, BF16_ENV, KEEP_MEMORY_ENV} <= read  # the scan finds them
    for name in read:
        assert f"  {name}=" in text, name
