"""Every setting of a service process: the shared ones and each service's own, in one model."""

from __future__ import annotations

from services.carriers.settings import CarrierSettings
from services.omnitron_publisher.settings import OmnitronSettings
from services.tracker.settings import TrackerSettings
from shared.settings import SOURCES, Settings


class ServiceSettings(TrackerSettings, OmnitronSettings, CarrierSettings, Settings):
    model_config = SOURCES

    def secrets(self) -> list[str]:
        """Every secret value, for the log redactor."""
        return Settings.secrets(self) + OmnitronSettings.secrets(self)
