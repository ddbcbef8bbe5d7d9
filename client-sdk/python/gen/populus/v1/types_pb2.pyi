from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

ATTRIBUTE_TYPE_BOOL: AttributeType
ATTRIBUTE_TYPE_DOUBLE: AttributeType
ATTRIBUTE_TYPE_INT64: AttributeType
ATTRIBUTE_TYPE_STRING: AttributeType
ATTRIBUTE_TYPE_UNSPECIFIED: AttributeType
DESCRIPTOR: _descriptor.FileDescriptor
JOB_STATUS_ERROR: JobStatus
JOB_STATUS_IGNORE: JobStatus
JOB_STATUS_PENDING: JobStatus
JOB_STATUS_RESERVED: JobStatus
JOB_STATUS_SUCCESS: JobStatus
JOB_STATUS_UNSPECIFIED: JobStatus

class Job(_message.Message):
    __slots__ = ["attempts", "complete_time", "create_time", "duration", "error_message", "error_stack", "key", "lease_expire_time", "priority", "progress", "progress_message", "reserve_time", "scheduled_time", "status", "worker"]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_TIME_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ERROR_STACK_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RESERVE_TIME_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_TIME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    attempts: int
    complete_time: _timestamp_pb2.Timestamp
    create_time: _timestamp_pb2.Timestamp
    duration: _duration_pb2.Duration
    error_message: str
    error_stack: str
    key: Key
    lease_expire_time: _timestamp_pb2.Timestamp
    priority: int
    progress: float
    progress_message: str
    reserve_time: _timestamp_pb2.Timestamp
    scheduled_time: _timestamp_pb2.Timestamp
    status: JobStatus
    worker: WorkerIdentity
    def __init__(self, key: _Optional[_Union[Key, _Mapping]] = ..., status: _Optional[_Union[JobStatus, str]] = ..., priority: _Optional[int] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., scheduled_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., reserve_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., complete_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., duration: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., worker: _Optional[_Union[WorkerIdentity, _Mapping]] = ..., attempts: _Optional[int] = ..., lease_expire_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., error_message: _Optional[str] = ..., error_stack: _Optional[str] = ..., progress: _Optional[float] = ..., progress_message: _Optional[str] = ...) -> None: ...

class Key(_message.Message):
    __slots__ = ["attributes"]
    class AttributesEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    attributes: _containers.MessageMap[str, Value]
    def __init__(self, attributes: _Optional[_Mapping[str, Value]] = ...) -> None: ...

class KeyAttribute(_message.Message):
    __slots__ = ["name", "type"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: AttributeType
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[AttributeType, str]] = ...) -> None: ...

class LeaseLostDetail(_message.Message):
    __slots__ = ["lease_tokens"]
    LEASE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    lease_tokens: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, lease_tokens: _Optional[_Iterable[str]] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ["error", "ignore", "pending", "remaining", "reserved", "success", "table", "target"]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    IGNORE_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    error: int
    ignore: int
    pending: int
    remaining: int
    reserved: int
    success: int
    table: str
    target: int
    def __init__(self, table: _Optional[str] = ..., pending: _Optional[int] = ..., reserved: _Optional[int] = ..., success: _Optional[int] = ..., error: _Optional[int] = ..., ignore: _Optional[int] = ..., target: _Optional[int] = ..., remaining: _Optional[int] = ...) -> None: ...

class TableInfo(_message.Message):
    __slots__ = ["create_time", "display_name", "key_attributes", "name", "progress"]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    KEY_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    create_time: _timestamp_pb2.Timestamp
    display_name: str
    key_attributes: _containers.RepeatedCompositeFieldContainer[KeyAttribute]
    name: str
    progress: Progress
    def __init__(self, name: _Optional[str] = ..., display_name: _Optional[str] = ..., key_attributes: _Optional[_Iterable[_Union[KeyAttribute, _Mapping]]] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ...) -> None: ...

class TargetRow(_message.Message):
    __slots__ = ["complete_time", "key", "result"]
    COMPLETE_TIME_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    complete_time: _timestamp_pb2.Timestamp
    key: Key
    result: _struct_pb2.Struct
    def __init__(self, key: _Optional[_Union[Key, _Mapping]] = ..., result: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., complete_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Value(_message.Message):
    __slots__ = ["bool_value", "double_value", "int_value", "string_value"]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    bool_value: bool
    double_value: float
    int_value: int
    string_value: str
    def __init__(self, int_value: _Optional[int] = ..., string_value: _Optional[str] = ..., double_value: _Optional[float] = ..., bool_value: bool = ...) -> None: ...

class WorkerIdentity(_message.Message):
    __slots__ = ["code_version", "host", "pid", "user", "worker_id"]
    CODE_VERSION_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    code_version: str
    host: str
    pid: int
    user: str
    worker_id: str
    def __init__(self, worker_id: _Optional[str] = ..., host: _Optional[str] = ..., pid: _Optional[int] = ..., user: _Optional[str] = ..., code_version: _Optional[str] = ...) -> None: ...

class AttributeType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class JobStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
