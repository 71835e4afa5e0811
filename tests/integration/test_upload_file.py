"""`Client.upload_file`: a file in every current and future worker's local directory,
imported there (and reloaded when uploaded again)."""

from __future__ import annotations

import sys
import uuid
import zipfile

import plugin_classes as pc
import pytest

from shoal import Client, LocalCluster


@pytest.fixture
def small(cluster_kwargs):
    kwargs = dict(cluster_kwargs, n_workers=1)
    with LocalCluster(**kwargs) as cl, Client(cl) as c:
        yield cl, c


def _module(tmp_path, body: str, name: str | None = None):
    name = name or f"shoal_upload_{uuid.uuid4().hex}"
    path = tmp_path / f"{name}.py"
    path.write_text(body)
    return name, path


def test_upload_py_imports_and_reloads(small, tmp_path):
    _, c = small
    name, path = _module(tmp_path, "value = 1\n")
    [addr] = c.nthreads()
    assert c.upload_file(str(path)) == {addr: {"status": "OK"}}
    assert c.run(pc.pid_and_file, path.name)[addr][1]
    assert c.submit(pc.import_attr, name, "value", pure=False).result() == 1
    path.write_text("value = 2  # changed\n")
    c.upload_file(str(path))
    assert c.submit(pc.import_attr, name, "value", pure=False).result() == 2


def test_local_directory_leaves_sys_path_with_the_worker(cluster_kwargs, tmp_path):
    _, path = _module(tmp_path, "value = 3\n")
    with LocalCluster(**dict(cluster_kwargs, n_workers=1)) as cl, Client(cl) as c:
        c.upload_file(str(path))
        [directory] = [w.local_directory for w in cl.workers.values()]
        assert directory in sys.path
    assert directory not in sys.path


def test_upload_reaches_future_workers(small, tmp_path):
    cl, c = small
    name, path = _module(tmp_path, "value = 'everywhere'\n")
    c.upload_file(str(path))
    cl.scale(3)
    c.wait_for_workers(3)
    assert set(c.run(pc.import_attr, name, "value").values()) == {"everywhere"}
    assert all(exists for _, exists in c.run(pc.pid_and_file, path.name).values())


def test_upload_zip_goes_on_sys_path(small, tmp_path):
    _, c = small
    pkg = f"shoal_zipped_{uuid.uuid4().hex}"
    archive = tmp_path / f"{pkg}.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr(f"{pkg}/__init__.py", "from .inner import value\n")
        z.writestr(f"{pkg}/inner.py", "value = 'zipped'\n")
    c.upload_file(str(archive))
    assert c.submit(pc.import_attr, pkg, "value", pure=False).result() == "zipped"


def test_upload_errors(small, tmp_path):
    _, c = small
    data = tmp_path / "data.txt"
    data.write_text("not python")
    with pytest.raises(ValueError, match="load=False"):
        c.upload_file(str(data))
    assert c.upload_file(str(data), load=False)  # only copied
    assert all(exists for _, exists in c.run(pc.pid_and_file, "data.txt").values())
    with pytest.raises(FileNotFoundError):
        c.upload_file(str(tmp_path / "missing.py"))
    _, broken = _module(tmp_path, "def oops(:\n")
    with pytest.raises(SyntaxError):
        c.upload_file(str(broken))


def test_upload_reaches_the_scheduler(small, tmp_path):
    _, c = small
    name, path = _module(tmp_path, "value = 'on the scheduler'\n")
    c.upload_file(str(path))

    def from_scheduler(dask_scheduler=None):
        return pc.import_attr(name, "value")

    assert c.run_on_scheduler(from_scheduler) == "on the scheduler"
    assert c.run_on_scheduler(pc.scheduler_plugin_names) == [f"upload-file-{path.name}"]
    c.upload_file(str(path))  # again: replaces the plugin (and its directory)
    assert c.run_on_scheduler(pc.scheduler_plugin_names) == [f"upload-file-{path.name}"]
