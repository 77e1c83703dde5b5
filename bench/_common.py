"""Django settings for the processes of a bench run (the bench itself and the Celery workers it starts).

The project's own settings, unchanged, except that one run keeps to itself on a shared Redis: its
Celery queue and its cache keys carry the run's name (BENCH_RUN), so a developer's worker on the
same Redis neither steals the bench's tasks nor sees its dispatch flag. The workers also import
`bench.dispatch`, where the no-op task the bench compares against lives.

    DJANGO_SETTINGS_MODULE=bench._common BENCH_RUN=bench-dispatch-123 celery -A config worker
"""

import os

from config.settings import *  # noqa: F403
from config.settings import CACHES

BENCH_RUN = os.environ.get("BENCH_RUN", "bench")
CELERY_TASK_DEFAULT_QUEUE = BENCH_RUN
CELERY_IMPORTS = ["bench.dispatch"]
CACHES = {**CACHES, "default": {**CACHES["default"], "KEY_PREFIX": BENCH_RUN}}
