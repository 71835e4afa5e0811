"""The all-to-all shuffle service: dataframe shuffles (``df.shuffle``, ``set_index``,
``sort_values``, hash merges and joins, ``split_out`` groupbys and drop_duplicates) and
dask.array rechunks that need all-to-all movement go through it on a shoal cluster
without the user asking.

- `method`: the value a shoal client gives dask's ``dataframe.shuffle.method``;
- `dataframe`: the client-side rewrite of dask's lowered shuffle node into the service's
  O(input + output) tasks;
- `rechunk`, `array`: the same for dask.array rechunks (graph rewrite; cutting blocks
  into pieces and assembling them, PURE);
- `exprs`: rebuilding a dask expression with some nodes replaced, names kept;
- `tasks`: what those tasks run on a worker;
- `split`: splitting an input partition and assembling an output (PURE);
- `book`: the scheduler's bookkeeping of runs and owners (PURE);
- `scheduler`: the scheduler extension (owners, pinning outputs, restarts, cleanup);
- `buffer`, `worker`: the worker extension (sending, receiving, buffering, spilling).

docs/design.md ("Shuffles") tells how it works and which dask internals it relies on.
"""
