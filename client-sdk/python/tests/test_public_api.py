"""The public surface of the populus package is pinned: a change to the list
of names fails here, and each name is what its docs say it is."""

import inspect
import typing

import populus


def test_public_names():
    assert sorted(populus.__all__) == sorted(
        [
            "DEFAULT_RETRY", "DEFAULT_URL", "AbortSignal", "CursorExpiredError", "GracefulStop", "InvalidArgumentError",
            "InvalidConfigError", "Jobs", "JobsConfig", "JobsView", "LeaseLostError", "MakeContext", "MakeError",
            "PermissionDeniedError", "PopulusClient", "PopulusConfig", "PopulusError", "ResourceExhaustedError", "RetryPolicy",
            "Table", "TableNotFoundError", "UnauthenticatedError", "UnavailableError", "Watch", "WorkerProcessError",
            "WorkerStoppingError", "config", "connect", "from_rpc_error",
        ]
    )  # fmt: skip
    for name in populus.__all__:
        assert hasattr(populus, name), name
    for name in populus.__all__:
        value = getattr(populus, name)
        if inspect.isclass(value) and issubclass(value, Exception):
            assert issubclass(value, populus.PopulusError), name
    assert list(inspect.signature(populus.Table.populate).parameters)[:8] == [
        "self", "reserve_jobs", "processes", "max_calls", "suppress_errors", "priority", "refresh", "display_progress",
    ]  # fmt: skip
    wait_for_work = inspect.signature(populus.Table.wait_for_work).parameters
    assert list(wait_for_work) == ["self", "wait", "refresh_interval", "stop"]
    assert [wait_for_work[p].default for p in ("wait", "refresh_interval", "stop")] == [60, None, None]
    # What it found: "jobs", "refresh" or None (the TypeScript SDK's WorkFound).
    assert typing.get_type_hints(populus.Table.wait_for_work)["return"] == typing.Optional[typing.Literal["jobs", "refresh"]]
    assert list(inspect.signature(populus.Jobs.refresh).parameters) == ["self", "priority", "delay", "stale_timeout", "orphan_timeout"]
    assert list(inspect.signature(populus.connect).parameters) == ["url", "token", "ca_file"]
