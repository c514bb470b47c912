/** Translation of DynamoDB's condition failures into what they mean for Usher. */
import { ConditionalCheckFailedException, TransactionCanceledException } from "@aws-sdk/client-dynamodb";

/** For a cancelled transaction: which item indexes failed their condition. Undefined for other errors. */
export function failedConditions(err: unknown): number[] | undefined {
  if (
    err instanceof TransactionCanceledException ||
    (err as { name?: string })?.name === "TransactionCanceledException"
  ) {
    const reasons = (err as TransactionCanceledException).CancellationReasons ?? [];
    return reasons.flatMap((r, i) => (r.Code === "ConditionalCheckFailed" ? [i] : []));
  }
  return undefined;
}

/** True when a transaction was cancelled because another transaction touched the same items. */
export function isTransactionConflict(err: unknown): boolean {
  const name = (err as { name?: string })?.name;
  if (name === "TransactionConflictException") return true;
  if (name !== "TransactionCanceledException") return false;
  const reasons = (err as TransactionCanceledException).CancellationReasons ?? [];
  return reasons.some((r) => r.Code === "TransactionConflict");
}

export function isConditionFailed(err: unknown): boolean {
  return (
    err instanceof ConditionalCheckFailedException ||
    (err as { name?: string })?.name === "ConditionalCheckFailedException"
  );
}
