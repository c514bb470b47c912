/**
 * Counts → dollars at the rates in prices.ts. Lambda duration is priced from the modeled AWS
 * duration of each invocation (this process's own time plus an assumed AWS latency per call, see
 * units.ts), rounded up to the millisecond as Lambda bills it, at LAMBDA_MEMORY_GB.
 */
import { sqsRequests, type Tally } from "./meter.ts";
import { cost, PRICES } from "./prices.ts";
import { LAMBDA_MEMORY_GB } from "./units.ts";

/** What a tally costs, by service. */
export type Bill = {
  dynamo: number;
  sqs: number;
  lambdaRequests: number;
  lambdaDuration: number;
  apiGateway: number;
};

export const total = (b: Bill) => b.dynamo + b.sqs + b.lambdaRequests + b.lambdaDuration + b.apiGateway;

export const addBills = (a: Bill, b: Bill, times = 1): Bill => ({
  dynamo: a.dynamo + b.dynamo * times,
  sqs: a.sqs + b.sqs * times,
  lambdaRequests: a.lambdaRequests + b.lambdaRequests * times,
  lambdaDuration: a.lambdaDuration + b.lambdaDuration * times,
  apiGateway: a.apiGateway + b.apiGateway * times,
});

export const NO_BILL: Bill = { dynamo: 0, sqs: 0, lambdaRequests: 0, lambdaDuration: 0, apiGateway: 0 };

/** Lambda duration of `ms` (one invocation) at the assumed memory size. */
export const durationCost = (ms: number) =>
  cost(PRICES.lambdaGbSecondX86, (Math.ceil(ms) / 1000) * LAMBDA_MEMORY_GB);

export function bill(t: Tally): Bill {
  return {
    dynamo: cost(PRICES.dynamoRead, t.rru) + cost(PRICES.dynamoWrite, t.wru),
    sqs: cost(PRICES.sqsRequest, sqsRequests(t)),
    lambdaRequests: cost(PRICES.lambdaRequest, t.invocations.length),
    lambdaDuration: t.invocations.reduce((n, i) => n + durationCost(i.modeledMs), 0),
    // Every API invocation is one HTTP API request through API Gateway.
    apiGateway: cost(PRICES.apiGatewayHttp, t.invocations.filter((i) => i.fn === "api").length),
  };
}

/** The sums of a tally that go in the per-operation figures. */
export function measures(t: Tally) {
  return {
    rru: t.rru,
    wru: t.wru,
    sqs: sqsRequests(t),
    invocations: t.invocations.length,
    wallMs: t.invocations.reduce((n, i) => n + i.wallMs, 0),
    modeledMs: t.invocations.reduce((n, i) => n + i.modeledMs, 0),
    usd: total(bill(t)),
  };
}
