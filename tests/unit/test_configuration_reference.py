from pathlib import Path

from services.tools.config_reference import configuration_reference

PAGE = Path(__file__).parents[2] / "docs" / "configuration.md"


def test_the_configuration_page_is_what_the_settings_model_generates():
    assert PAGE.read_text() == configuration_reference(), (
        "docs/configuration.md is stale: run `oms-shipments docs configuration`"
    )


def test_every_setting_has_a_description():
    from services.runtime.settings import ServiceSettings as Settings

    assert [name for name, field in Settings.model_fields.items() if not field.description] == []
