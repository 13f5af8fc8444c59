"""The carriers file (TOML): the contract's example parses; mistakes are refused with a clear message."""

from __future__ import annotations

import pytest

from services.carriers.directory import CarrierDirectory, CarriersFileError, load_carriers
from services.carriers.shipment_flows import CarrierConfig

CONTRACT_EXAMPLE = """
[carriers.sandbox]
url = "http://127.0.0.1:8081"
username = "user"
password = "secret"
api_version = "1"
poll_interval_s = 60        # how soon a shipment is queried again
max_requests_per_s = 50     # the carrier's rate limit, all replicas together
"""


def write(tmp_path, text: str):
    path = tmp_path / "carriers.toml"
    path.write_text(text)
    return path


def test_the_contracts_example_carriers_file_is_parsed(tmp_path):
    configs = load_carriers(write(tmp_path, CONTRACT_EXAMPLE))

    assert configs == {
        "sandbox": CarrierConfig(
            code="sandbox",
            url="http://127.0.0.1:8081",
            username="user",
            password="secret",
            api_version="1",
            locale="tr-TR",
            poll_interval_s=60,
            max_requests_per_s=50,
            timeout_s=10.0,
        )
    }


def test_several_carriers_with_optional_keys_are_parsed(tmp_path):
    configs = load_carriers(
        write(
            tmp_path,
            CONTRACT_EXAMPLE
            + """
[carriers.fastcargo]
url = "https://api.fastcargo.example/v2"
username = "oms"
password = "pw"
api_version = 2
locale = "en-US"
timeout_s = 5.5
""",
        )
    )

    assert sorted(configs) == ["fastcargo", "sandbox"]
    fast = configs["fastcargo"]
    assert (fast.api_version, fast.locale, fast.timeout_s, fast.poll_interval_s) == ("2", "en-US", 5.5, 60)


def test_the_password_does_not_show_in_a_carrier_configs_repr(tmp_path):
    assert "secret" not in repr(load_carriers(write(tmp_path, CONTRACT_EXAMPLE)))


def test_an_unknown_key_is_refused_naming_the_carrier_and_the_key(tmp_path):
    text = CONTRACT_EXAMPLE.replace('password = "secret"', 'pasword = "secret"\npassword = "secret"')

    with pytest.raises(CarriersFileError, match=r"carrier 'sandbox': unknown keys \['pasword'\]"):
        load_carriers(write(tmp_path, text))


def test_a_carrier_without_url_is_refused_naming_the_missing_key(tmp_path):
    text = CONTRACT_EXAMPLE.replace('url = "http://127.0.0.1:8081"\n', "")

    with pytest.raises(CarriersFileError, match=r"carrier 'sandbox': missing \['url'\]"):
        load_carriers(write(tmp_path, text))


def test_a_missing_carriers_file_names_the_path_and_oms_carriers_file(tmp_path):
    missing = tmp_path / "nowhere" / "carriers.toml"

    with pytest.raises(CarriersFileError) as raised:
        load_carriers(missing)

    assert str(missing) in str(raised.value)
    assert "OMS_CARRIERS_FILE" in str(raised.value)


def test_a_file_that_is_not_toml_is_refused_as_such(tmp_path):
    with pytest.raises(CarriersFileError, match="is not valid TOML"):
        load_carriers(write(tmp_path, "[carriers.sandbox\nurl = "))


@pytest.mark.parametrize(
    "text, message",
    [
        ('[carriers]\nsandbox = "http://127.0.0.1:8081"\n', "carrier 'sandbox': expected a table"),
        ('carriers = ["sandbox"]\n', "'carriers' must be a table of carrier tables"),
        (
            CONTRACT_EXAMPLE.replace("poll_interval_s = 60", 'poll_interval_s = "1m"'),
            "carrier 'sandbox': poll_interval_s must be a positive number",
        ),
        (
            CONTRACT_EXAMPLE.replace("max_requests_per_s = 50", "max_requests_per_s = 0"),
            "carrier 'sandbox': max_requests_per_s must be a positive number",
        ),
        (
            CONTRACT_EXAMPLE.replace('username = "user"', "username = 42"),
            "carrier 'sandbox': username must be a string",
        ),
    ],
)
def test_a_value_of_the_wrong_shape_is_refused_with_a_clear_message(tmp_path, text, message):
    with pytest.raises(CarriersFileError, match=message):
        load_carriers(write(tmp_path, text))


def test_the_directory_knows_its_carrier_codes_and_builds_one_client_per_carrier(tmp_path):
    directory = CarrierDirectory(load_carriers(write(tmp_path, CONTRACT_EXAMPLE)))
    try:
        assert "sandbox" in directory and "ghost" not in directory
        assert directory.client("sandbox") is directory.client("sandbox")
        assert directory.client("sandbox").config.url == "http://127.0.0.1:8081"
        with pytest.raises(KeyError):
            directory.client("ghost")
    finally:
        directory.close()


# ---- carriers without integration (CONTRACT.md §4) ------------------------------------------------


def test_a_carrier_without_integration_is_known_but_never_integrated(tmp_path):
    configs = load_carriers(write(tmp_path, CONTRACT_EXAMPLE + '\n[carriers.store-courier]\nintegration = "none"\n'))
    directory = CarrierDirectory(configs)

    assert list(configs) == ["sandbox"] and directory.manual == {"store-courier"}
    assert "store-courier" in directory and "sandbox" in directory and "curier" not in directory
    assert directory.integrated("sandbox") and not directory.integrated("store-courier")


def test_a_carriers_file_of_couriers_without_integration_only_is_valid(tmp_path):
    assert load_carriers(write(tmp_path, '[carriers.store-courier]\nintegration = "none"\n')).manual == {
        "store-courier"
    }


@pytest.mark.parametrize(
    "table, message",
    [
        ('integration = "full"', 'integration must be "none"'),
        ('integration = "none"\nurl = "http://127.0.0.1:8081"', "a carrier without integration takes no ['url']"),
    ],
)
def test_a_carrier_without_integration_takes_nothing_else(tmp_path, table, message):
    with pytest.raises(CarriersFileError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_carriers(write(tmp_path, f"[carriers.store-courier]\n{table}\n"))


# ---- each carrier's Omnitron shipping company code (CONTRACT.md §5) --------------------------------


def test_a_carrier_names_its_omnitron_shipping_company_code_integrated_or_not(tmp_path):
    text = (
        CONTRACT_EXAMPLE
        + 'omnitron_shipping_company = "sandbox-cargo"\n'
        + '\n[carriers.store-courier]\nintegration = "none"\nomnitron_shipping_company = "store"\n'
        + '\n[carriers.plain]\nintegration = "none"\n'
    )
    directory = CarrierDirectory(load_carriers(write(tmp_path, text)))

    assert directory.omnitron_companies == {"sandbox": "sandbox-cargo", "store-courier": "store"}
    assert "plain" not in directory.omnitron_companies  # named by its own code
    assert directory.integrated("sandbox") and directory.configs["sandbox"].url == "http://127.0.0.1:8081"


@pytest.mark.parametrize("value", ['""', "5", '"' + "x" * 256 + '"'])
def test_an_omnitron_shipping_company_code_that_is_no_code_is_refused(tmp_path, value):
    with pytest.raises(CarriersFileError, match="omnitron_shipping_company must be an Omnitron shipping company code"):
        load_carriers(write(tmp_path, CONTRACT_EXAMPLE + f"omnitron_shipping_company = {value}\n"))
