"""The worker: a pure state machine (`state`) behind a thin I/O shell (`server`).

The names `distributed.worker` offers are available here (imported on first use).
"""

from shoal._names import lazy_exports

_ALT = (
    "an internal of distributed's worker; shoal's worker state is shoal.worker.state.WorkerState "
    '(pure, different API); use the Client API or a WorkerPlugin'
)

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        'Worker': 'shoal.worker.server:Worker',
        'benchmark_disk': 'shoal.benchmarking:benchmark_disk',
        'benchmark_memory': 'shoal.benchmarking:benchmark_memory',
        'get_client': 'shoal.worker_client:get_client',
        'get_worker': 'shoal.worker.server:get_worker',
        'print': 'shoal.diagnostics.remote_print:print',
        'secede': 'shoal.worker_client:secede',
        'warn': 'shoal.diagnostics.remote_print:warn',
    },
    {
        'benchmark_network': 'use Client.benchmark_hardware(), which measures the network between workers',
        **dict.fromkeys(
            ['GetDataBusy', 'GetDataSuccess', 'RunTaskFailure', 'RunTaskSuccess', 'add_gpu_metrics',
             'convert_args_to_str', 'convert_kwargs_to_str', 'dumps_function', 'fail_hard',
             'get_data_from_worker', 'get_msg_safe_str', 'run'],
            _ALT,
        ),
    },
)
