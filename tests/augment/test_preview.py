"""segkit.augment.preview: which tiles are drawn and what is written under them."""

from __future__ import annotations

from pathlib import Path

import pytest

from segkit.augment.run import augment_store
from segkit.augment.preview import _choose_tiles, describe_transform, render_preview
from segkit.store.reader import open_store
from tests.helpers.store_inputs import write_source_store


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("preview")
    src = write_source_store(root / "s.zarr")
    return src, augment_store(src, root / "a.zarr", target=90, seed=2).path


def test_transform_labels_name_every_op_with_its_parameters() -> None:
    text = ('[{"axis":"horizontal","op":"flip"},{"angle":-12.34,"op":"rotate"},{"op":"blur","sigma":0.8},'
            '{"bias":0.05,"gain":1.1,"gamma":0.9,"op":"contrast"}]')
    assert describe_transform(text) == "hflip · rot -12.3° · blur σ0.80 · γ0.90 ×1.10 +0.05"
    assert describe_transform("") == "original"


def test_each_grid_row_is_a_training_parent_followed_by_its_own_children(stores) -> None:
    _, augmented = stores
    store = open_store(augmented)
    table = store.table
    grid = _choose_tiles(store, 16, seed=0)
    assert sum(len(row) for row in grid) == 16
    for row in grid:
        parent, *children = row
        assert table["source"][parent.row] == "original" and table["split"][parent.row] == "train"
        assert table["has_tumour"][parent.row]
        assert children and all(table["parent"][c.row] == parent.row for c in children)
        assert all(c.label == describe_transform(table["transform"][c.row]) for c in children)


def test_store_without_augmentation_shows_originals(stores, tmp_path) -> None:
    source, _ = stores
    grid = _choose_tiles(open_store(source), 6, seed=0)
    assert [len(r) for r in grid] == [4, 2]
    assert all(t.label.startswith("original · ") for r in grid for t in r)
    assert render_preview(source, tmp_path / "p.png", n=6).stat().st_size > 1000
