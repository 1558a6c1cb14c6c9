"""The ACS handler tests use the same fixtures as the ILS tests (see tests/ils/conftest.py)."""

from tests.ils.conftest import (  # noqa: F401  (fixtures are found by name)
    acs,
    call_fixture,
    ctx,
    db,
    now,
    sipconfig,
    unit_demo_template,
    unit_my_template,
    unit_pg_template,
)
