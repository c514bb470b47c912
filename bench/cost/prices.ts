/**
 * AWS's published on-demand list prices in us-east-1 (N. Virginia), USD, as read on 2026-12-05
 * through the benchmark's search of stored public pages. AWS renders most of its own price tables
 * client-side, so where the stored copy of AWS's page holds no figure the rate is cross-read from a
 * dated third-party transcription, named beside it. Free tiers are left out on purpose: they are
 * per account, not per operation (each one is named in `freeTier` so the section can say so).
 */

/** One rate: what it costs, per how many of what, and where it was read. */
export type Rate = {
  usd: number;
  per: number;
  unit: string;
  source: string;
  /** A dated page that states the figure, when AWS's own page did not show it to the search. */
  confirmedBy?: string;
  read: "2026-12-05";
  freeTier?: string;
};

const READ = "2026-12-05" as const;

export const PRICES = {
  dynamoWrite: {
    usd: 0.625,
    per: 1e6,
    unit: "write request units (on-demand, Standard table class)",
    source: "https://aws.amazon.com/dynamodb/pricing/on-demand/",
    confirmedBy: "https://airbyte.com/data-engineering-resources/dynamodb-pricing (US East)",
    read: READ,
  },
  dynamoRead: {
    usd: 0.125,
    per: 1e6,
    unit: "read request units (on-demand, Standard table class)",
    source: "https://aws.amazon.com/dynamodb/pricing/on-demand/",
    confirmedBy: "https://airbyte.com/data-engineering-resources/dynamodb-pricing (US East)",
    read: READ,
  },
  dynamoStorage: {
    usd: 0.25,
    per: 1,
    unit: "GB-month of table and index storage (Standard table class)",
    source: "https://aws.amazon.com/dynamodb/pricing/",
    read: READ,
    freeTier: "first 25 GB a month",
  },
  sqsRequest: {
    usd: 0.4,
    per: 1e6,
    unit: "standard-queue requests (each 64 KB chunk of a payload is one request)",
    source: "https://aws.amazon.com/sqs/pricing/",
    confirmedBy: "https://cloudburn.io/blog/amazon-sqs-pricing (us-east-1, March 2026)",
    read: READ,
    freeTier: "first 1 million requests a month",
  },
  lambdaRequest: {
    usd: 0.2,
    per: 1e6,
    unit: "Lambda requests (invocations)",
    source: "https://aws.amazon.com/lambda/pricing/",
    confirmedBy:
      "https://raw.githubusercontent.com/api-evangelist/aws-lambda/refs/heads/main/plans/aws-lambda-plans-pricing.yml (transcribed 2026-09-20)",
    read: READ,
    freeTier: "first 1 million requests a month",
  },
  lambdaGbSecondX86: {
    usd: 0.0000166667,
    per: 1,
    unit: "GB-second of Lambda duration, x86_64, first 6 billion GB-s a month",
    source: "https://aws.amazon.com/lambda/pricing/",
    confirmedBy:
      "https://app.unpkg.com/artillery@2.0.28/files/lib/platform/aws-lambda/prices.js (base x86_64)",
    read: READ,
    freeTier: "first 400,000 GB-s a month",
  },
  apiGatewayHttp: {
    usd: 1.0,
    per: 1e6,
    unit: "HTTP API requests (first 300 million a month, metered in 512 KB increments)",
    source: "https://aws.amazon.com/api-gateway/pricing/",
    confirmedBy: "https://awsforengineers.com/blog/aws-api-gateway-pricing-explained (May 2025)",
    read: READ,
    freeTier: "1 million a month for 12 months, new accounts only",
  },
  schedulerInvocation: {
    usd: 1.0,
    per: 1e6,
    unit: "EventBridge Scheduler invocations",
    source: "https://aws.amazon.com/eventbridge/pricing/",
    confirmedBy: "https://cloudburn.io/blog/amazon-eventbridge-pricing (us-east-1, March 2026)",
    read: READ,
    freeTier: "first 14 million invocations a month",
  },
} as const satisfies Record<string, Rate>;

/** The price of `quantity` of a rate's unit. */
export const cost = (rate: Rate, quantity: number) => (quantity / rate.per) * rate.usd;

/** AWS bills a month as 730 hours in its price examples; so do we. */
export const HOURS_PER_MONTH = 730;
export const MINUTES_PER_MONTH = HOURS_PER_MONTH * 60;

/** The rates as one note line: value, unit, source, date. */
export function describePrices(): string {
  return Object.values(PRICES)
    .map(
      (r: Rate) =>
        `$${r.usd} per ${r.per === 1 ? "" : `${r.per.toLocaleString("en-US")} `}${r.unit} (${r.source}, read ${r.read})`,
    )
    .join("; ");
}
