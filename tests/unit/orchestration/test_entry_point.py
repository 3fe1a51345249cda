"""The `prefect.collections` entry point, through which Prefect finds the package's block types."""

from importlib.metadata import entry_points

from prefect.blocks.core import Block


def test_the_entry_point_names_the_blocks_module_and_loading_it_registers_the_block_types():
    (entry,) = [e for e in entry_points(group="prefect.collections") if e.name == "prefect_braket"]
    assert entry.value == "prefect_braket.orchestration.blocks"
    module = entry.load()
    assert Block.get_block_class_from_key("braket-device") is module.BraketDevice
    assert Block.get_block_class_from_key("braket-hybrid-job") is module.BraketHybridJob
