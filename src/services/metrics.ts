// Cgroup counters in the protobuf form containerd reads: an Any holding
// io.containerd.cgroups.v1.Metrics or v2.Metrics (packed as containerd's shims pack it: its CRI
// compares the type URL with the message's name).
import type { Any } from '@bufbuild/protobuf/wkt';
import { MetricsSchema as V1MetricsSchema } from '../api/containerd/cgroups/v1/metrics_pb.js';
import { MetricsSchema as V2MetricsSchema } from '../api/containerd/cgroups/v2/metrics_pb.js';
import type { CgroupMetrics } from '../base/metrics.js';
import { packAny } from './wkt.js';

export function packCgroupMetrics(metrics: CgroupMetrics): Any {
  return metrics.version === 1 ? packAny(V1MetricsSchema, metrics.v1) : packAny(V2MetricsSchema, metrics.v2);
}
