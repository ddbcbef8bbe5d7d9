from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from populus.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AbandonRefreshRequest(_message.Message):
    __slots__ = ["claim_id", "table"]
    CLAIM_ID_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    claim_id: str
    table: str
    def __init__(self, table: _Optional[str] = ..., claim_id: _Optional[str] = ...) -> None: ...

class AbandonRefreshResponse(_message.Message):
    __slots__ = ["released"]
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    released: bool
    def __init__(self, released: bool = ...) -> None: ...

class ClaimRefreshRequest(_message.Message):
    __slots__ = ["claim_id", "claim_timeout", "min_interval", "renew", "table", "wait"]
    CLAIM_ID_FIELD_NUMBER: _ClassVar[int]
    CLAIM_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    MIN_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    RENEW_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    claim_id: str
    claim_timeout: _duration_pb2.Duration
    min_interval: _duration_pb2.Duration
    renew: bool
    table: str
    wait: _duration_pb2.Duration
    def __init__(self, table: _Optional[str] = ..., claim_id: _Optional[str] = ..., min_interval: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., claim_timeout: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., renew: bool = ..., wait: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ClaimRefreshResponse(_message.Message):
    __slots__ = ["any_pending", "granted", "last_refresh_time", "running"]
    ANY_PENDING_FIELD_NUMBER: _ClassVar[int]
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    LAST_REFRESH_TIME_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    any_pending: bool
    granted: bool
    last_refresh_time: _timestamp_pb2.Timestamp
    running: bool
    def __init__(self, granted: bool = ..., running: bool = ..., last_refresh_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., any_pending: bool = ...) -> None: ...

class CompleteRequest(_message.Message):
    __slots__ = ["completions", "keep_completed", "lease_tokens", "results_json", "table"]
    COMPLETIONS_FIELD_NUMBER: _ClassVar[int]
    KEEP_COMPLETED_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    RESULTS_JSON_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    completions: _containers.RepeatedCompositeFieldContainer[Completion]
    keep_completed: bool
    lease_tokens: _containers.RepeatedScalarFieldContainer[str]
    results_json: str
    table: str
    def __init__(self, table: _Optional[str] = ..., completions: _Optional[_Iterable[_Union[Completion, _Mapping]]] = ..., keep_completed: bool = ..., lease_tokens: _Optional[_Iterable[str]] = ..., results_json: _Optional[str] = ...) -> None: ...

class CompleteResponse(_message.Message):
    __slots__ = ["already_committed", "committed"]
    ALREADY_COMMITTED_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    already_committed: int
    committed: int
    def __init__(self, committed: _Optional[int] = ..., already_committed: _Optional[int] = ...) -> None: ...

class Completion(_message.Message):
    __slots__ = ["lease_token", "result"]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    lease_token: str
    result: _struct_pb2.Struct
    def __init__(self, lease_token: _Optional[str] = ..., result: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class DeleteJobsRequest(_message.Message):
    __slots__ = ["keys", "statuses", "table"]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[_types_pb2.Key]
    statuses: _containers.RepeatedScalarFieldContainer[_types_pb2.JobStatus]
    table: str
    def __init__(self, table: _Optional[str] = ..., statuses: _Optional[_Iterable[_Union[_types_pb2.JobStatus, str]]] = ..., keys: _Optional[_Iterable[_Union[_types_pb2.Key, _Mapping]]] = ...) -> None: ...

class DeleteJobsResponse(_message.Message):
    __slots__ = ["deleted"]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...

class DeleteTargetsRequest(_message.Message):
    __slots__ = ["all", "keys", "table"]
    ALL_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    all: bool
    keys: _containers.RepeatedCompositeFieldContainer[_types_pb2.Key]
    table: str
    def __init__(self, table: _Optional[str] = ..., keys: _Optional[_Iterable[_Union[_types_pb2.Key, _Mapping]]] = ..., all: bool = ...) -> None: ...

class DeleteTargetsResponse(_message.Message):
    __slots__ = ["deleted"]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...

class FailRequest(_message.Message):
    __slots__ = ["error_message", "error_stack", "lease_token", "table"]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ERROR_STACK_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    error_message: str
    error_stack: str
    lease_token: str
    table: str
    def __init__(self, table: _Optional[str] = ..., lease_token: _Optional[str] = ..., error_message: _Optional[str] = ..., error_stack: _Optional[str] = ...) -> None: ...

class FailResponse(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class GetProgressRequest(_message.Message):
    __slots__ = ["table"]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    table: str
    def __init__(self, table: _Optional[str] = ...) -> None: ...

class GetProgressResponse(_message.Message):
    __slots__ = ["progress"]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    progress: _types_pb2.Progress
    def __init__(self, progress: _Optional[_Union[_types_pb2.Progress, _Mapping]] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ["lease_duration", "lease_tokens", "progress", "table"]
    LEASE_DURATION_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    lease_duration: _duration_pb2.Duration
    lease_tokens: _containers.RepeatedScalarFieldContainer[str]
    progress: _containers.RepeatedCompositeFieldContainer[LeaseProgress]
    table: str
    def __init__(self, table: _Optional[str] = ..., lease_tokens: _Optional[_Iterable[str]] = ..., lease_duration: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., progress: _Optional[_Iterable[_Union[LeaseProgress, _Mapping]]] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ["lease_expire_time", "lost_lease_tokens"]
    LEASE_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    LOST_LEASE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    lease_expire_time: _timestamp_pb2.Timestamp
    lost_lease_tokens: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, lost_lease_tokens: _Optional[_Iterable[str]] = ..., lease_expire_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class IgnoreRequest(_message.Message):
    __slots__ = ["keys", "table"]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[_types_pb2.Key]
    table: str
    def __init__(self, table: _Optional[str] = ..., keys: _Optional[_Iterable[_Union[_types_pb2.Key, _Mapping]]] = ...) -> None: ...

class IgnoreResponse(_message.Message):
    __slots__ = ["ignored"]
    IGNORED_FIELD_NUMBER: _ClassVar[int]
    ignored: int
    def __init__(self, ignored: _Optional[int] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ["committed", "error_message", "key", "status", "time", "worker_id"]
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    committed: bool
    error_message: str
    key: _types_pb2.Key
    status: _types_pb2.JobStatus
    time: _timestamp_pb2.Timestamp
    worker_id: str
    def __init__(self, key: _Optional[_Union[_types_pb2.Key, _Mapping]] = ..., status: _Optional[_Union[_types_pb2.JobStatus, str]] = ..., time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., worker_id: _Optional[str] = ..., committed: bool = ..., error_message: _Optional[str] = ...) -> None: ...

class JobEventGroup(_message.Message):
    __slots__ = ["committed", "error_messages", "keys_json", "status", "time", "worker_id"]
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    KEYS_JSON_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    committed: bool
    error_messages: _containers.RepeatedScalarFieldContainer[str]
    keys_json: str
    status: _types_pb2.JobStatus
    time: _timestamp_pb2.Timestamp
    worker_id: str
    def __init__(self, keys_json: _Optional[str] = ..., status: _Optional[_Union[_types_pb2.JobStatus, str]] = ..., time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., worker_id: _Optional[str] = ..., committed: bool = ..., error_messages: _Optional[_Iterable[str]] = ...) -> None: ...

class Lease(_message.Message):
    __slots__ = ["attempt", "key", "lease_expire_time", "lease_token", "priority"]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    key: _types_pb2.Key
    lease_expire_time: _timestamp_pb2.Timestamp
    lease_token: str
    priority: int
    def __init__(self, key: _Optional[_Union[_types_pb2.Key, _Mapping]] = ..., lease_token: _Optional[str] = ..., lease_expire_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., attempt: _Optional[int] = ..., priority: _Optional[int] = ...) -> None: ...

class LeaseColumns(_message.Message):
    __slots__ = ["attempts", "key_attributes", "keys_json", "lease_expire_time", "lease_tokens", "priorities"]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    KEYS_JSON_FIELD_NUMBER: _ClassVar[int]
    KEY_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PRIORITIES_FIELD_NUMBER: _ClassVar[int]
    attempts: _containers.RepeatedScalarFieldContainer[int]
    key_attributes: _containers.RepeatedCompositeFieldContainer[_types_pb2.KeyAttribute]
    keys_json: str
    lease_expire_time: _timestamp_pb2.Timestamp
    lease_tokens: _containers.RepeatedScalarFieldContainer[str]
    priorities: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, lease_tokens: _Optional[_Iterable[str]] = ..., keys_json: _Optional[str] = ..., attempts: _Optional[_Iterable[int]] = ..., priorities: _Optional[_Iterable[int]] = ..., lease_expire_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., key_attributes: _Optional[_Iterable[_Union[_types_pb2.KeyAttribute, _Mapping]]] = ...) -> None: ...

class LeaseProgress(_message.Message):
    __slots__ = ["lease_token", "message", "progress"]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    lease_token: str
    message: str
    progress: float
    def __init__(self, lease_token: _Optional[str] = ..., progress: _Optional[float] = ..., message: _Optional[str] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ["max_priority", "page_size", "page_token", "restriction", "statuses", "table"]
    class RestrictionEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _types_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_types_pb2.Value, _Mapping]] = ...) -> None: ...
    MAX_PRIORITY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    RESTRICTION_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    max_priority: int
    page_size: int
    page_token: str
    restriction: _containers.MessageMap[str, _types_pb2.Value]
    statuses: _containers.RepeatedScalarFieldContainer[_types_pb2.JobStatus]
    table: str
    def __init__(self, table: _Optional[str] = ..., statuses: _Optional[_Iterable[_Union[_types_pb2.JobStatus, str]]] = ..., max_priority: _Optional[int] = ..., restriction: _Optional[_Mapping[str, _types_pb2.Value]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ["jobs", "next_page_token"]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[_types_pb2.Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[_types_pb2.Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListTablesRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class ListTablesResponse(_message.Message):
    __slots__ = ["tables"]
    TABLES_FIELD_NUMBER: _ClassVar[int]
    tables: _containers.RepeatedCompositeFieldContainer[_types_pb2.TableInfo]
    def __init__(self, tables: _Optional[_Iterable[_Union[_types_pb2.TableInfo, _Mapping]]] = ...) -> None: ...

class ListTargetsRequest(_message.Message):
    __slots__ = ["page_size", "page_token", "restriction", "table"]
    class RestrictionEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _types_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_types_pb2.Value, _Mapping]] = ...) -> None: ...
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    RESTRICTION_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    restriction: _containers.MessageMap[str, _types_pb2.Value]
    table: str
    def __init__(self, table: _Optional[str] = ..., restriction: _Optional[_Mapping[str, _types_pb2.Value]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTargetsResponse(_message.Message):
    __slots__ = ["next_page_token", "rows"]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    next_page_token: str
    rows: _containers.RepeatedCompositeFieldContainer[_types_pb2.TargetRow]
    def __init__(self, rows: _Optional[_Iterable[_Union[_types_pb2.TargetRow, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RefreshRequest(_message.Message):
    __slots__ = ["claim_id", "delay", "final", "key_attributes", "keys", "keys_json", "orphan_timeout", "priority", "refresh_id", "stale_timeout", "table"]
    CLAIM_ID_FIELD_NUMBER: _ClassVar[int]
    DELAY_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    KEYS_JSON_FIELD_NUMBER: _ClassVar[int]
    KEY_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    ORPHAN_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    REFRESH_ID_FIELD_NUMBER: _ClassVar[int]
    STALE_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    claim_id: str
    delay: _duration_pb2.Duration
    final: bool
    key_attributes: _containers.RepeatedCompositeFieldContainer[_types_pb2.KeyAttribute]
    keys: _containers.RepeatedCompositeFieldContainer[_types_pb2.Key]
    keys_json: str
    orphan_timeout: _duration_pb2.Duration
    priority: int
    refresh_id: str
    stale_timeout: _duration_pb2.Duration
    table: str
    def __init__(self, table: _Optional[str] = ..., keys: _Optional[_Iterable[_Union[_types_pb2.Key, _Mapping]]] = ..., refresh_id: _Optional[str] = ..., final: bool = ..., priority: _Optional[int] = ..., delay: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., stale_timeout: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., orphan_timeout: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., keys_json: _Optional[str] = ..., key_attributes: _Optional[_Iterable[_Union[_types_pb2.KeyAttribute, _Mapping]]] = ..., claim_id: _Optional[str] = ...) -> None: ...

class RefreshResponse(_message.Message):
    __slots__ = ["added", "any_pending", "calls_at_once", "orphaned", "re_pended", "removed"]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    ANY_PENDING_FIELD_NUMBER: _ClassVar[int]
    CALLS_AT_ONCE_FIELD_NUMBER: _ClassVar[int]
    ORPHANED_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    RE_PENDED_FIELD_NUMBER: _ClassVar[int]
    added: int
    any_pending: bool
    calls_at_once: int
    orphaned: int
    re_pended: int
    removed: int
    def __init__(self, added: _Optional[int] = ..., removed: _Optional[int] = ..., orphaned: _Optional[int] = ..., re_pended: _Optional[int] = ..., any_pending: bool = ..., calls_at_once: _Optional[int] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ["lease_tokens", "table"]
    LEASE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    lease_tokens: _containers.RepeatedScalarFieldContainer[str]
    table: str
    def __init__(self, table: _Optional[str] = ..., lease_tokens: _Optional[_Iterable[str]] = ...) -> None: ...

class ReleaseResponse(_message.Message):
    __slots__ = ["lost_lease_tokens", "released"]
    LOST_LEASE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    lost_lease_tokens: _containers.RepeatedScalarFieldContainer[str]
    released: int
    def __init__(self, released: _Optional[int] = ..., lost_lease_tokens: _Optional[_Iterable[str]] = ...) -> None: ...

class ReserveRequest(_message.Message):
    __slots__ = ["as_columns", "lease_duration", "max_jobs", "max_priority", "request_id", "restriction", "table", "wait", "worker"]
    class RestrictionEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _types_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_types_pb2.Value, _Mapping]] = ...) -> None: ...
    AS_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    LEASE_DURATION_FIELD_NUMBER: _ClassVar[int]
    MAX_JOBS_FIELD_NUMBER: _ClassVar[int]
    MAX_PRIORITY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RESTRICTION_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    as_columns: bool
    lease_duration: _duration_pb2.Duration
    max_jobs: int
    max_priority: int
    request_id: str
    restriction: _containers.MessageMap[str, _types_pb2.Value]
    table: str
    wait: _duration_pb2.Duration
    worker: _types_pb2.WorkerIdentity
    def __init__(self, table: _Optional[str] = ..., max_jobs: _Optional[int] = ..., max_priority: _Optional[int] = ..., restriction: _Optional[_Mapping[str, _types_pb2.Value]] = ..., worker: _Optional[_Union[_types_pb2.WorkerIdentity, _Mapping]] = ..., lease_duration: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., wait: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., as_columns: bool = ..., request_id: _Optional[str] = ...) -> None: ...

class ReserveResponse(_message.Message):
    __slots__ = ["columns", "leases"]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    LEASES_FIELD_NUMBER: _ClassVar[int]
    columns: LeaseColumns
    leases: _containers.RepeatedCompositeFieldContainer[Lease]
    def __init__(self, leases: _Optional[_Iterable[_Union[Lease, _Mapping]]] = ..., columns: _Optional[_Union[LeaseColumns, _Mapping]] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ["counts_only", "cursor", "grouped_events", "table"]
    COUNTS_ONLY_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    GROUPED_EVENTS_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    counts_only: bool
    cursor: str
    grouped_events: bool
    table: str
    def __init__(self, table: _Optional[str] = ..., cursor: _Optional[str] = ..., counts_only: bool = ..., grouped_events: bool = ...) -> None: ...

class WatchResponse(_message.Message):
    __slots__ = ["cursor", "event_groups", "events", "key_attributes", "progress"]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    EVENT_GROUPS_FIELD_NUMBER: _ClassVar[int]
    KEY_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    cursor: str
    event_groups: _containers.RepeatedCompositeFieldContainer[JobEventGroup]
    events: _containers.RepeatedCompositeFieldContainer[JobEvent]
    key_attributes: _containers.RepeatedCompositeFieldContainer[_types_pb2.KeyAttribute]
    progress: _types_pb2.Progress
    def __init__(self, cursor: _Optional[str] = ..., progress: _Optional[_Union[_types_pb2.Progress, _Mapping]] = ..., events: _Optional[_Iterable[_Union[JobEvent, _Mapping]]] = ..., event_groups: _Optional[_Iterable[_Union[JobEventGroup, _Mapping]]] = ..., key_attributes: _Optional[_Iterable[_Union[_types_pb2.KeyAttribute, _Mapping]]] = ...) -> None: ...
