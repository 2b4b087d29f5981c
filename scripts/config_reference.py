"""Write docs/CONFIG.md, the reference of every setting, from the config dataclasses.

    .venv/bin/python scripts/config_reference.py
"""
from pathlib import Path

from tfrs_multiscene.cli import config_reference

path = Path(__file__).resolve().parent.parent / "docs" / "CONFIG.md"
path.write_text(config_reference() + "\n")
print(f"wrote {path}")
