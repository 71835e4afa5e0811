"""`distributed.core`'s names: `Status` (shoal.status); its RPC layer is distributed's own."""

from shoal._names import lazy_exports

_ALT = (
    "distributed's RPC layer; shoal's is shoal.rpc (Peer, ConnectionPool) and speaks another "
    'protocol; use the Client API (Client.run, run_on_scheduler) instead'
)

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        'Status': 'shoal.status:Status',
        'CommClosedError': 'shoal.comm.errors:CommClosedError',
    },
    {
        **dict.fromkeys(
            ['ConnectionPool', 'ErrorMessage', 'OKMessage', 'PooledRPCCall', 'RPCClosed', 'Server',
             'addr_from_args', 'clean_exception', 'coerce_to_address', 'collect_causes',
             'context_meter_to_server_digest', 'error_message', 'pingpong', 'raise_later', 'rpc',
             'send_recv'],
            _ALT,
        ),
    },
)
