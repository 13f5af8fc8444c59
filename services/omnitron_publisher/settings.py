"""The Omnitron publisher's settings (``OMS_OMNITRON_*``)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from shared.settings import SOURCES


class OmnitronSettings(BaseSettings):
    model_config = SOURCES

    omnitron_url: str | None = Field(None, description="Omnitron's base URL.")
    omnitron_token: SecretStr | None = Field(None, description="Omnitron API token.")
    omnitron_timeout_s: float = Field(10.0, gt=0, description="How long an Omnitron call waits for its answer.")
    omnitron_settle_s: float = Field(
        60.0,
        gt=0,
        description="After an Omnitron call that got no answer, how long it may still take effect "
        "at Omnitron; then the shipment's newest status is sent again, so a late older one cannot stay.",
    )
    omnitron_bulk_packages: int = Field(
        1,
        ge=1,
        description="Packages whose changes one Omnitron `bulk_status_update` call may carry "
        "(CONTRACT.md §5). Above 1 the publisher takes batches of up to OMS_BATCH_SIZE changes and sends "
        "them in waves, one change per shipment each: fewer calls, but a publisher killed between such a "
        "call and its commit repeats it for every package in it, and its handler threads take turns.",
    )

    def secrets(self) -> list[str]:
        return [self.omnitron_token.get_secret_value()] if self.omnitron_token else []
