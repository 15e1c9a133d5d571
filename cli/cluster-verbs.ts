// Names of the cluster-mode verbs, kept apart from their implementation so `rescale` can route them without
// loading gRPC, BullMQ or ioredis for local commands.

export const CLUSTER_COMMANDS = [
  'coordinator',
  'worker',
  'submit',
  'status',
  'watch',
  'cancel',
  'retry',
  'workers',
] as const;
export type ClusterCommand = (typeof CLUSTER_COMMANDS)[number];

export function isClusterCommand(value: string | undefined): value is ClusterCommand {
  return (CLUSTER_COMMANDS as readonly (string | undefined)[]).includes(value);
}
