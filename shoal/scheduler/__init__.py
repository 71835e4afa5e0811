"""The scheduler: a pure state machine (`state`) behind a thin I/O shell (`server`).

The names `distributed.scheduler` offers are available here (imported on first use).
"""

from shoal._names import lazy_exports

_ALT = (
    "an internal of distributed's scheduler; shoal's scheduler state is "
    'shoal.scheduler.state.SchedulerState (pure, different API); use the Client API or a '
    'SchedulerPlugin'
)

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        'KilledWorker': 'shoal.exceptions:KilledWorker',
        'Scheduler': 'shoal.scheduler.server:Scheduler',
    },
    {
        **dict.fromkeys(
            ['ClientState', 'CollectTaskMetaDataPlugin', 'Computation', 'ErredTask', 'MemoryState',
             'NoValidWorkerError', 'NoWorkerError', 'SchedulerState', 'TaskCollection', 'TaskGroup',
             'TaskPrefix', 'TaskState', 'Transition', 'WorkerState', 'WorkerStatusPlugin', 'decide_worker',
             'heartbeat_interval', 'validate_state', 'validate_task_state', 'validate_unrunnable',
             'validate_worker_state'],
            _ALT,
        ),
    },
)
