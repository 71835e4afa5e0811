"""Plugins and `upload_file` with real worker processes: workers started later and
workers restarted by their nanny get them again; nanny plugins."""

from __future__ import annotations

import os
import uuid

import plugin_classes as pc
import pytest
from task_functions import inc

from shoal import Client, Environ, LocalCluster

pytestmark = pytest.mark.system


def test_worker_plugin_and_upload_reach_new_and_restarted_workers(tmp_path, poll):
    name = f"shoal_upload_proc_{uuid.uuid4().hex}"
    path = tmp_path / f"{name}.py"
    path.write_text("value = 'v1'\n")
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True) as cl, Client(cl) as c:
        c.register_plugin(pc.RecordingWorkerPlugin("p"), name="rec-p")
        [first] = c.upload_file(str(path))
        assert c.submit(pc.import_attr, name, "value", pure=False).result() == "v1"
        path.write_text("value = 'v2'\n")
        c.upload_file(str(path))  # reloaded in the running worker process
        assert c.submit(pc.import_attr, name, "value", pure=False).result() == "v2"
        assert c.submit(inc, 1, key="proc-inc").result() == 2
        log = c.run(pc.plugin_log)[first]
        assert ("p", "transition", "proc-inc", "ready", "executing") in log

        cl.scale(2)  # a worker process started after the registrations
        c.wait_for_workers(2)
        assert set(c.run(pc.import_attr, name, "value").values()) == {"v2"}
        assert all(log[0] == ("p", "setup") for log in c.run(pc.plugin_log).values())

        before = {pid for pid, _ in c.run(pc.pid_and_file, path.name).values()}
        c.restart()  # every worker process is replaced by its nanny
        c.wait_for_workers(2)
        after = c.run(pc.pid_and_file, path.name)
        assert len(after) == 2 and not before & {pid for pid, _ in after.values()}
        assert all(exists for _, exists in after.values())
        assert set(c.run(pc.import_attr, name, "value").values()) == {"v2"}
        assert all(log == [("p", "setup")] for log in c.run(pc.plugin_log).values())
        seen = c.gather(c.map(pc.plugin_log_in_task, range(8), pure=False))
        assert all(log[0] == ("p", "setup") for log in seen)


def test_nanny_plugin_restarts_workers_and_reaches_new_nannies(poll):
    var = f"SHOAL_TEST_NANNY_PLUGIN_{uuid.uuid4().hex}"
    try:
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True) as cl, Client(cl) as c:
            [old] = c.nthreads()
            assert set(c.run(pc.getenv, var).values()) == {None}
            plugin = pc.EnvironNannyPlugin(var, "set")
            replies = c.register_plugin(plugin)
            [nanny] = cl.workers.values()
            assert replies == {nanny.id: {"status": "OK"}}
            assert nanny.test_plugin_log == [("environ", "setup")]
            # restart=True: the nanny restarted its worker, which inherited the variable
            poll(lambda: old not in c.nthreads() and len(c.nthreads()) == 1, timeout=30)
            assert set(c.run(pc.getenv, var).values()) == {"set"}

            cl.scale(2)  # a new nanny sets the plugin up before starting its worker
            c.wait_for_workers(2)
            [new] = [n for n in cl.workers.values() if n is not nanny]
            assert new.test_plugin_log == [("environ", "setup")]
            assert new.restarts == 0  # its first worker already started with the plugin
            assert set(c.run(pc.getenv, var).values()) == {"set"}

            c.unregister_worker_plugin(plugin.name, nanny=True)
            assert nanny.test_plugin_log[-1] == ("environ", "teardown")
            assert var not in os.environ
            with pytest.raises(ValueError, match="does not exist"):
                c.unregister_worker_plugin(plugin.name, nanny=True)
    finally:
        os.environ.pop(var, None)


def test_environ_plugin_sets_worker_process_variables(poll):
    var = f"SHOAL_TEST_ENVIRON_{uuid.uuid4().hex}"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True) as cl, Client(cl) as c:
        [nanny] = cl.workers.values()
        [old] = c.nthreads()
        c.register_plugin(Environ({var: 42}))
        poll(lambda: old not in c.nthreads() and len(c.nthreads()) == 1, timeout=30)
        assert set(c.run(pc.getenv, var).values()) == {"42"}
        assert var not in os.environ  # only the worker processes get it
        cl.scale(2)
        c.wait_for_workers(2)
        assert set(c.run(pc.getenv, var).values()) == {"42"}
        c.unregister_worker_plugin("environ", nanny=True)
        assert var not in nanny.env
