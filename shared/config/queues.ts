/** Queue names. One `ops` and one `results` queue per deployment, one command queue per site. */
export const queueNames = (prefix: string) => ({
  ops: `${prefix}ops`,
  results: `${prefix}results`,
  agent: (site: string) => `${prefix}agent-${site}`,
  deadLetter: (queue: string) => `${queue}-dlq`,
});

/** Redrive: a message received this many times without being deleted goes to the queue's DLQ. */
export const MAX_RECEIVE_COUNT = 5;

/** Visibility timeouts per queue, in seconds. The agent extends its own while an operation runs. */
export const visibilityTimeoutSeconds = { ops: 60, results: 60, agent: 60 } as const;
