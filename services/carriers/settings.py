"""Where the carriers are configured (``OMS_CARRIERS_FILE``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings

from shared.settings import SOURCES


class CarrierSettings(BaseSettings):
    model_config = SOURCES

    carriers_file: Path = Field(Path("carriers.toml"), description="The carriers file (TOML).")
