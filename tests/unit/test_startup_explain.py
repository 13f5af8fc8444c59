"""services/startup.explain: which failures are an operator's to fix, and the line that says so."""

from __future__ import annotations

import pydantic
import pytest

from services.runtime.settings import ServiceSettings as Settings
from services.runtime.startup import StartupProblem, explain

HIDDEN = "s3cret-typed-in-the-wrong-place"


def test_a_setting_that_does_not_parse_is_named_and_its_value_is_not_repeated(monkeypatch):
    monkeypatch.setenv("OMS_PREFETCH", HIDDEN)
    with pytest.raises(pydantic.ValidationError) as raised:
        Settings()

    line = explain(raised.value, None)

    assert line is not None and "\n" not in line
    assert line.startswith("invalid configuration: OMS_PREFETCH: ") and HIDDEN not in line


def test_a_fault_of_ours_is_not_explained_away_and_keeps_its_traceback():
    assert explain(KeyError("shipment_id"), None) is None
    assert explain(ZeroDivisionError(), None) is None


def test_a_start_up_problem_is_one_line_with_the_url_password_hidden():
    problem = StartupProblem("the database at postgresql://oms:pa55word@db/oms\nhas no schema")

    assert explain(problem, None) == "the database at postgresql://oms:***@db/oms has no schema"
