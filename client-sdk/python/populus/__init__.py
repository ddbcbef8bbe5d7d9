"""Populus for Python: DataJoint's ``populate(reserve_jobs=True)`` over the
Populus JobService, the same protocol and semantics as the TypeScript SDK.

```python
import populus

db = populus.connect()  # url=, else POPULUS_URL, else http://127.0.0.1:50051

def make(key, ctx):
    return {"mean": key["subject_id"] * 10 + key["session"]}

Mean = db.table("Mean", key_source=[{"subject_id": 1, "session": 1}], make=make)
Mean.populate(reserve_jobs=True, processes=2)  # {"success_count": 1, "error_list": []}
```
"""

import os as _os

# The generated protobuf and gRPC modules (populus.v1) are written by
# `buf generate --template buf.gen.python.yaml` into ../gen/populus/v1, a
# directory buf may wipe (clean: true), so they cannot live in this one. In the
# source tree populus.v1 is found there; pyproject.toml installs them as
# populus/v1 inside the package, where this path does not exist.
_generated = _os.path.join(_os.path.dirname(__file__), _os.pardir, "gen", "populus")
if _os.path.isdir(_generated):
    __path__.append(_os.path.normpath(_generated))  # type: ignore[name-defined]  # noqa: F821

from populus.client import PopulusClient, connect  # noqa: E402
from populus.config import DEFAULT_URL, JobsConfig, PopulusConfig, config  # noqa: E402
from populus.context import AbortSignal, MakeContext  # noqa: E402
from populus.errors import (  # noqa: E402
    CursorExpiredError,
    InvalidArgumentError,
    InvalidConfigError,
    LeaseLostError,
    MakeError,
    PermissionDeniedError,
    PopulusError,
    ResourceExhaustedError,
    TableNotFoundError,
    UnauthenticatedError,
    UnavailableError,
    WorkerProcessError,
    WorkerStoppingError,
    from_rpc_error,
)
from populus.graceful_stop import GracefulStop  # noqa: E402
from populus.jobs import Jobs, JobsView  # noqa: E402
from populus.retry import DEFAULT_RETRY, RetryPolicy  # noqa: E402
from populus.table import Table  # noqa: E402
from populus.watch import Watch  # noqa: E402

__all__ = [
    "DEFAULT_RETRY",
    "DEFAULT_URL",
    "AbortSignal",
    "CursorExpiredError",
    "GracefulStop",
    "InvalidArgumentError",
    "InvalidConfigError",
    "Jobs",
    "JobsConfig",
    "JobsView",
    "LeaseLostError",
    "MakeContext",
    "MakeError",
    "PermissionDeniedError",
    "PopulusClient",
    "PopulusConfig",
    "PopulusError",
    "ResourceExhaustedError",
    "RetryPolicy",
    "Table",
    "TableNotFoundError",
    "UnauthenticatedError",
    "UnavailableError",
    "Watch",
    "WorkerProcessError",
    "WorkerStoppingError",
    "config",
    "connect",
    "from_rpc_error",
]
