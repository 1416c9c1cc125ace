# DO NOT EDIT: written by `make generate` (tools/codegen/protoc.py).
"""The descriptor pool of the v1 API, apart from the process-wide default pool."""

from google.protobuf import descriptor_pb2, descriptor_pool, duration_pb2, timestamp_pb2

POOL = descriptor_pool.DescriptorPool()
for _wkt in (descriptor_pb2, duration_pb2, timestamp_pb2):
    POOL.AddSerializedFile(_wkt.DESCRIPTOR.serialized_pb)
