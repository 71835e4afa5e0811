"""distributed's ready-made plugins on real worker processes: PipInstall (a wheel made
here, installed with pip into the workers' environment), UploadDirectory, ForwardOutput,
ForwardLoggingPlugin."""

from __future__ import annotations

import base64
import hashlib
import importlib
import os
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import pytest

from shoal import Client, CondaInstall, InstallPlugin, LocalCluster, PipInstall, UploadDirectory
from shoal.diagnostics.plugin import ForwardLoggingPlugin, ForwardOutput, SchedulerPlugin

pytestmark = pytest.mark.system


def make_wheel(directory, module: str, value: int) -> str:
    """A pure-Python wheel of one module `module` with `VALUE = value` (no build step)."""
    dist = f"{module}-1.0.dist-info"
    files = {
        f"{module}.py": f"VALUE = {value}\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: shoal-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = "\n".join(record) + "\n"
    path = os.path.join(directory, f"{module}-1.0-py3-none-any.whl")
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return path


def _uninstall(module: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", module], capture_output=True)


def read_module(name: str) -> int:
    return importlib.import_module(name).VALUE


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cl:
        yield cl


@pytest.fixture
def client(cluster):
    with Client(cluster, set_as_default=False) as c:
        yield c


def test_pip_install_with_restart(client, tmp_path):
    module = f"shoal_wheel_{uuid.uuid4().hex[:8]}"
    wheel = make_wheel(tmp_path, module, 42)
    before = set(client.scheduler_info()["workers"])
    plugin = PipInstall([wheel], pip_options=["--no-index", "--no-deps", "-q"], restart_workers=True)
    assert isinstance(plugin, InstallPlugin) and isinstance(plugin, SchedulerPlugin)
    try:
        client.register_plugin(plugin)
        client.wait_for_workers(1)
        assert client.submit(read_module, module, pure=False).result(timeout=60) == 42
        assert not before & set(client.scheduler_info()["workers"])  # the worker was restarted
    finally:
        _uninstall(module)


def test_pip_install_in_workers_without_restart(tmp_path):
    module = f"shoal_wheel_{uuid.uuid4().hex[:8]}"
    wheel = make_wheel(tmp_path, module, 7)
    try:
        with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cl, Client(cl) as c:
            c.register_plugin(PipInstall([wheel], pip_options=["--no-index", "--no-deps", "-q"]))
            importlib.invalidate_caches()
            assert c.submit(read_module, module).result() == 7
    finally:
        _uninstall(module)


def test_failed_install_fails_registration(client, tmp_path):
    with pytest.raises(RuntimeError, match="pip install of .* failed"):
        client.register_plugin(PipInstall([str(tmp_path / "no-such.whl")], pip_options=["--no-index"]))
    assert client.submit(sum, [1, 2]).result() == 3


def test_install_plugin_arguments():
    with pytest.raises(TypeError, match="list of package names"):
        PipInstall("scikit-learn")
    plugin = CondaInstall(["numpy"], conda_options=["-c", "conda-forge"], restart_workers=True)
    assert plugin.packages == ["numpy"] and plugin.as_plugin().restart is True


def test_upload_directory(client, tmp_path):
    package = tmp_path / f"project_{uuid.uuid4().hex[:8]}"
    (package / "tests").mkdir(parents=True)
    (package / "helpers_mod.py").write_text("def answer():\n    return 'from the uploaded directory'\n")
    (package / "tests" / "test_x.py").write_text("raise SystemExit('tests are not shipped')\n")
    client.register_plugin(UploadDirectory(str(package), restart_workers=True, update_path=True))
    client.wait_for_workers(1)

    def use(name):
        import importlib
        import os

        mod = importlib.import_module(f"{name}.helpers_mod")
        shipped = os.listdir(os.path.dirname(mod.__file__))
        return mod.answer(), "tests" in shipped

    assert client.submit(use, package.name, pure=False).result(timeout=60) == ("from the uploaded directory", False)


def test_forward_output(client, capsys, poll):
    def printer(text):
        import builtins

        builtins.print(text)  # the plain builtin: ForwardOutput forwards it
        return len(text)

    client.register_plugin(ForwardOutput())
    token = f"forwarded-{uuid.uuid4().hex}"
    assert client.submit(printer, token).result() == len(token)
    seen = []
    poll(lambda: seen.append(capsys.readouterr().out) or token in "".join(seen), timeout=10)


def test_forward_logging_plugin(client, poll):
    def logs(text):
        import logging

        logging.getLogger("user.app").warning(text)

    client.register_plugin(ForwardLoggingPlugin("user.app", 10, "app-logs"))
    token = f"logged-{uuid.uuid4().hex}"
    client.submit(logs, token).result()
    poll(lambda: any(token in str(msg) for _, msg in client.get_events("app-logs")), timeout=10)


def test_upload_directory_to_workers_without_restart(tmp_path):
    package = tmp_path / f"proj_{uuid.uuid4().hex[:8]}"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "mod.py").write_text("VALUE = 'unpacked in the worker'\n")
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cl, Client(cl) as c:
        c.register_plugin(UploadDirectory(str(package), update_path=True))
        (worker,) = cl.workers.values()
        assert (Path(worker.local_directory) / package.name / "mod.py").exists()
        assert c.submit(read_module, f"{package.name}.mod").result() == "unpacked in the worker"


def test_upload_directory_modes(tmp_path):
    with pytest.raises(ValueError, match="not supported, expected one of"):
        UploadDirectory(str(tmp_path), mode="nanny")
    with pytest.raises(ValueError, match="not a directory"):
        UploadDirectory("/no/such/dir")
    with pytest.warns(FutureWarning, match="'restart' keyword is deprecated"):
        assert UploadDirectory(str(tmp_path), restart=True).restart_workers is True
    with pytest.raises(TypeError, match="restart_workers= only"):
        UploadDirectory(str(tmp_path), restart=True, restart_workers=True)


def _project(tmp_path, value: str) -> Path:
    package = tmp_path / f"proj_{uuid.uuid4().hex[:8]}"
    (package / "docs").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "mod.py").write_text(f"VALUE = {value!r}\n")
    (package / "docs" / "index.md").write_text("not shipped\n")
    return package


def test_upload_directory_to_the_scheduler(tmp_path):
    package = _project(tmp_path, "unpacked on the scheduler")
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cl, Client(cl) as c:
        c.register_plugin(UploadDirectory(str(package), update_path=True, mode="scheduler"))
        plugin = cl.scheduler.plugin_host.plugins[f"upload-directory-{package.name}"]
        unpacked = Path(plugin.directory) / package.name
        assert (unpacked / "mod.py").exists() and not (unpacked / "docs").exists()
        # both the package (by its name) and its modules (by theirs, as distributed) import
        assert c.run_on_scheduler(read_module, f"{package.name}.mod") == "unpacked on the scheduler"
        assert str(unpacked) in sys.path
        (worker,) = cl.workers.values()
        assert not (Path(worker.local_directory) / package.name).exists()  # the scheduler only
        c.unregister_scheduler_plugin(f"upload-directory-{package.name}")
        assert not unpacked.exists() and str(unpacked) not in sys.path


def test_upload_directory_to_all(tmp_path):
    package = _project(tmp_path, "unpacked everywhere")
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cl, Client(cl) as c:
        c.register_plugin(UploadDirectory(str(package), update_path=True, mode="all"))
        (worker,) = cl.workers.values()
        assert (Path(worker.local_directory) / package.name / "mod.py").exists()
        assert c.submit(read_module, "mod", pure=False).result() == "unpacked everywhere"  # distributed's path
        assert c.run_on_scheduler(read_module, f"{package.name}.mod") == "unpacked everywhere"
        cl.scale(2)  # a later worker gets it too (the scheduler registered the worker plugin)
        new = [w for w in cl.workers.values() if w is not worker]
        assert new and (Path(new[0].local_directory) / package.name / "mod.py").exists()
