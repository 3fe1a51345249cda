"""Registers prefect-braket's block types and saves the block documents in this folder.

    python blocks/save_blocks.py [--overwrite]

Each `*.json` here is `{"block_type": "<slug>", "name": "<document name>", "data": {...}}`;
documents go to the Prefect API of the current profile (`PREFECT_API_URL`).
"""

import argparse
import json
import sys
from pathlib import Path

from prefect.blocks.core import Block

import prefect_braket.orchestration.blocks  # noqa: F401  (defines the block types)


def save_all(folder: Path, overwrite: bool = False) -> list[str]:
    saved = []
    for document in sorted(folder.glob("*.json")):
        spec = json.loads(document.read_text())
        block_class = Block.get_block_class_from_key(spec["block_type"])
        block_class.register_type_and_schema()
        block_class(**spec["data"]).save(spec["name"], overwrite=overwrite)
        saved.append(f"{spec['block_type']}/{spec['name']}")
    return saved


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--overwrite", action="store_true", help="replace documents that already exist")
    names = save_all(Path(__file__).parent, parser.parse_args().overwrite)
    print("\n".join(f"saved {name}" for name in names) or "no block documents found", file=sys.stdout)
