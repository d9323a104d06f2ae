// Cgroup counters in the protobuf form containerd reads: an Any holding
// io.containerd.cgroups.v1.Metrics or v2.Metrics. containerd's CRI recognises the type by
// comparing the type_url with the message's full name (typeurl.Is), so the url is the bare name,
// as containerd's own shims write it, not anyPack's "type.googleapis.com/" form.
import { create, toBinary, type DescMessage, type MessageInitShape } from '@bufbuild/protobuf';
import { AnySchema, type Any } from '@bufbuild/protobuf/wkt';
import { MetricsSchema as V1MetricsSchema } from '../api/containerd/cgroups/v1/metrics_pb.js';
import { MetricsSchema as V2MetricsSchema } from '../api/containerd/cgroups/v2/metrics_pb.js';
import type { CgroupMetrics } from '../core/metrics.js';

function packBare<Desc extends DescMessage>(schema: Desc, init: MessageInitShape<Desc>): Any {
  return create(AnySchema, { typeUrl: schema.typeName, value: toBinary(schema, create(schema, init)) });
}

export function packCgroupMetrics(metrics: CgroupMetrics): Any {
  return metrics.version === 1 ? packBare(V1MetricsSchema, metrics.v1) : packBare(V2MetricsSchema, metrics.v2);
}
