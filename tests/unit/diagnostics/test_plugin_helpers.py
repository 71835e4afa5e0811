"""Helpers behind plugins: which hooks a plugin really has, importing uploaded files."""

from __future__ import annotations

import sys
import uuid

import pytest

from shoal.diagnostics.plugin import SchedulerPlugin, UploadFile, WorkerPlugin, import_file, plugin_name
from shoal.utils import overrides_hook


class Watcher(WorkerPlugin):
    def transition(self, key, start, finish, **kwargs):
        pass


class SubWatcher(Watcher):
    pass


def test_overrides_hook_ignores_the_base_class_no_ops():
    assert not overrides_hook(WorkerPlugin(), "transition")
    assert overrides_hook(Watcher(), "transition")
    assert overrides_hook(SubWatcher(), "transition")
    assert not overrides_hook(SubWatcher(), "setup")
    assert not overrides_hook(SchedulerPlugin(), "add_worker")


def test_plugin_name_from_attribute_or_generated():
    p = Watcher()
    assert plugin_name(p).startswith("Watcher-")
    p.name = "mine"
    assert plugin_name(p) == "mine"
    assert UploadFile.name == "upload_file"


def test_import_file_reloads_a_changed_module(tmp_path):
    name = f"shoal_unit_upload_{uuid.uuid4().hex}"
    path = tmp_path / f"{name}.py"
    path.write_text("value = 1\n")
    try:
        [mod] = import_file(str(path))
        assert mod.value == 1
        path.write_text("value = 22\n")
        [mod2] = import_file(str(path))
        assert mod2 is mod and mod.value == 22
    finally:
        sys.modules.pop(name, None)
        if str(tmp_path) in sys.path:
            sys.path.remove(str(tmp_path))


def test_import_file_and_upload_file_reject_other_types(tmp_path):
    data = tmp_path / "notes.txt"
    data.write_text("x")
    with pytest.raises(ValueError, match=r"\.py, \.zip, \.egg, \.pyz"):
        import_file(str(data))
    with pytest.raises(ValueError, match="load=False"):
        UploadFile(str(data))
    assert UploadFile(str(data), load=False).data == b"x"
