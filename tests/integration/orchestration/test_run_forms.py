"""What the Prefect UI's forms show: a help text for every parameter of the example deployments,
their schedule's timezone, and block catalog entries that read as one sentence each."""

import sys

import pytest
from prefect.utilities.callables import parameter_schema

from helpers.paths import FLOWS
from prefect_braket import BraketDevice, BraketHybridJob

sys.path.insert(0, str(FLOWS))

import serve  # noqa: E402


@pytest.mark.parametrize("flow", [serve.vqe_h2, serve.qaoa_maxcut, serve.sweep, serve.resume_demo,
                                  serve.hybrid_job_flow], ids=lambda f: f.name)
def test_every_parameter_of_a_served_flow_has_help_text(flow):
    """The run form's help texts are the flow's docstring's Args, as Prefect reads them."""
    properties = parameter_schema(flow.fn).properties
    assert properties, flow.name
    missing = [name for name, field in properties.items() if not field.get("description")]
    assert not missing, f"{flow.name}: no help text for {missing}"


def test_the_nightly_schedule_is_in_utc_as_prefect_yaml_says():
    nightly = next(d for d in serve.deployments() if d.name == "vqe-h2-nightly")
    (schedule,) = nightly.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 2 * * *", "UTC")


@pytest.mark.parametrize("block", [BraketDevice, BraketHybridJob])
def test_block_catalog_texts_read_whole(block):
    assert "\n" not in block.get_description() and block.get_description().endswith(".")
    properties = block.model_json_schema()["properties"]
    assert all(field["description"].endswith(".") for field in properties.values())
    assert properties["aws_credentials"]["title"] == "AWS Credentials"
    if block is BraketDevice:
        assert properties["max_cost_usd"]["title"] == "Max Cost (USD)"
