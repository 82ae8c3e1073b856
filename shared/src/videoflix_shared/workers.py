"""Running a service as several uvicorn worker processes behind one port (catalog through
`app.run_http_service`, streaming's own `serve`): what both supervisors are given. Kept free
of imports, because every worker process imports its command's module again at start
(multiprocessing's spawn), before it can answer its supervisor.
"""

from __future__ import annotations

# uvicorn's supervisor kills a worker that does not answer its ping within this, and starts
# another. Its default, 5 s, is shorter than a worker's start on a loaded machine (catalog's
# imports alone took 8-14 s at a load of 19 on 2 cores): every worker was killed while still
# importing, in a loop, and the service never answered.
WORKER_HEALTHCHECK_SECONDS = 60
