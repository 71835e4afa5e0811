"""Compatibility mode (`python -m shoal.compat`, `install()`, `%load_ext shoal.compat`):
unchanged programs written for distributed run on shoal, in the user's process and in
every worker process; shoal itself never imports distributed (tested with it hidden)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.system

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# a meta-path blocker: the real distributed cannot be imported (shoal's aliases come first)
HIDE_DISTRIBUTED = textwrap.dedent("""
    import sys
    class _Hide:
        def find_spec(self, name, path=None, target=None):
            if name == "distributed" or name.startswith("distributed."):
                raise ImportError(f"distributed is hidden in this test ({name})")
            return None
    sys.meta_path.insert(0, _Hide())
""")

UNCHANGED_PROGRAM = textwrap.dedent("""
    import sys
    import dask.array as da
    import dask.distributed
    from distributed import Client, LocalCluster, get_worker
    from distributed.core import Status

    def where_am_i():
        import distributed
        import os
        return os.getpid(), type(get_worker()).__module__, distributed.Client.__module__

    if __name__ == "__main__":
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            assert cluster.status == Status.running
            with Client(cluster) as client:
                assert isinstance(client, dask.distributed.Client)
                pid, worker_module, client_module = client.submit(where_am_i).result()
                assert pid != __import__("os").getpid()
                total = da.ones((100, 100), chunks=(10, 10)).sum().compute()
                print("OK", sys.argv[1:], worker_module, client_module, int(total))
""")


def run(args, code=None, hide=None, **kwargs):
    """Run python with shoal importable; with `hide` (a directory), a sitecustomize there
    hides the real distributed from this process and every process it starts."""
    env = dict(os.environ)
    env.pop("SHOAL_COMPAT", None)
    paths = [ROOT, env.get("PYTHONPATH", "")]
    if hide is not None:
        (hide / "sitecustomize.py").write_text(HIDE_DISTRIBUTED)
        paths.insert(0, str(hide))
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    cmd = [sys.executable, *args] if code is None else [sys.executable, "-c", code, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, **kwargs)


def test_python_m_shoal_compat_runs_an_unchanged_program(tmp_path):
    """With the real distributed hidden from the program and its worker processes."""
    script = tmp_path / "program.py"
    script.write_text(UNCHANGED_PROGRAM)
    done = run(["-m", "shoal.compat", str(script), "--flag", "x"], hide=tmp_path)
    assert done.returncode == 0, done.stderr
    # the worker process is in the mode too: `distributed` there is shoal
    assert "OK ['--flag', 'x'] shoal.worker.server shoal.client.client 10000" in done.stdout


def test_shoal_never_imports_distributed(tmp_path):
    code = textwrap.dedent("""
        import sys
        import dask, dask.array as da
        import shoal, shoal.client, shoal.worker, shoal.scheduler, shoal.core, shoal.deploy, shoal.diagnostics
        from shoal import Client, LocalCluster
        with LocalCluster(n_workers=1, processes=True, dashboard_address=None) as cluster, Client(cluster) as c:
            assert da.arange(10, chunks=5).sum().compute() == 45
            assert not any(c.run(lambda: "distributed" in __import__("sys").modules).values())
        assert "distributed" not in sys.modules, "shoal imported distributed"
        import shoal.compat
        shoal.compat.install()  # the mode needs no distributed either
        import distributed
        assert distributed.Client is Client
        print("CLEAN")
    """)
    done = run([], code, hide=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "CLEAN" in done.stdout


def test_install_refuses_after_distributed_was_imported():
    code = textwrap.dedent("""
        import distributed  # the real one, installed beside shoal
        import shoal.compat
        try:
            shoal.compat.install()
        except RuntimeError as e:
            print("REFUSED", e)
    """)
    done = run([], code)
    assert done.returncode == 0, done.stderr
    assert "REFUSED shoal.compat.install() must run before distributed is imported" in done.stdout


def test_outside_the_mode_distributed_is_untouched():
    code = textwrap.dedent("""
        import shoal.compat
        shoal.compat.install()
        import distributed
        assert distributed.Client.__module__.startswith("shoal")
        try:
            import distributed.utils_test
        except ModuleNotFoundError as e:
            print("MISSING", e)
        shoal.compat.uninstall()
        import importlib
        real = importlib.import_module("distributed")
        print("REAL", real.Client.__module__, real.__version__)
    """)
    done = run([], code)
    assert done.returncode == 0, done.stderr
    assert "REAL distributed.client 2026.8.0" in done.stdout
    assert "MISSING No module named 'distributed.utils_test': shoal's compatibility mode" in done.stdout


def test_load_ext_in_ipython():
    pytest.importorskip("IPython", reason="IPython is a test dependency")
    code = textwrap.dedent("""
        from IPython.testing.globalipapp import start_ipython
        ip = start_ipython()
        ip.run_line_magic("load_ext", "shoal.compat")
        ip.run_cell("import distributed; from dask.distributed import Client; print('IPY', distributed.Client is Client, Client.__module__)")
    """)
    done = run([], code)
    assert done.returncode == 0, done.stderr
    assert "IPY True shoal.client.client" in done.stdout
