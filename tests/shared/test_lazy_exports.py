"""The stage packages' public names (the README's import paths) resolve, and load their module only when used."""

from __future__ import annotations

import subprocess
import sys

import pytest

from segkit.lazy import lazy_exports

PUBLIC = {
    "segkit.convert": {"convert": "segkit.convert.run", "ConvertOptions": "segkit.convert.plan"},
    "segkit.store": {"open_store": "segkit.store.reader", "StoreWriter": "segkit.store.writer"},
    "segkit.augment": {"augment_store": "segkit.augment.run"},
}


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_public_names_are_the_defining_modules_objects(package: str) -> None:
    pkg = __import__(package, fromlist=["_"])
    for name, module in PUBLIC[package].items():
        obj = getattr(pkg, name)
        assert obj.__module__ == module and obj is getattr(sys.modules[module], name)
    assert sorted(pkg.__all__) == sorted(PUBLIC[package])


def test_importing_the_packages_loads_none_of_their_modules() -> None:
    code = (
        "import sys, segkit.convert, segkit.store, segkit.augment\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in ('zarr', 'pydicom', 'highdicom', 'cv2')"
        " or m.startswith(('segkit.convert.', 'segkit.store.', 'segkit.augment.')))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_an_unknown_name_is_an_attribute_error() -> None:
    getattr_ = lazy_exports("segkit.store", {"open_store": "reader"})
    with pytest.raises(AttributeError, match="segkit.store.*no_such_name"):
        getattr_("no_such_name")
    import segkit.store
    assert not hasattr(segkit.store, "no_such_name")
