"""Run one function per file on a process pool; a crashed worker fails its files, not the run
(``multiprocessing.Pool.map`` waits forever when a worker dies). Used by the peer drivers."""

import json
import time
from concurrent.futures import ProcessPoolExecutor


def run_and_print(fn, files, procs, **pool_kwargs):
    t = time.perf_counter()
    results = []
    with ProcessPoolExecutor(procs, **pool_kwargs) as pool:
        futures = [(f, pool.submit(fn, f)) for f in files]
        for f, fut in futures:
            try:
                results.append(fut.result())
            except Exception as exc:  # noqa: BLE001 - reported per file
                results.append({"file": f, "error": f"{type(exc).__name__}: {exc}"})
    print(json.dumps({"seconds": time.perf_counter() - t, "results": results}))
