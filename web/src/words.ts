/** How the demo says the API's values in plain English. */
import type { BankFeed, FeedAccount } from "./api.js";

export const STATUS_LABELS: Record<FeedAccount["status"], string> = {
  not_added: "not added",
  pending: "pending",
  connecting: "connecting",
  connected: "connected",
  disconnected: "disconnected",
  unknown: "unknown",
};

type ConnectionStatus = NonNullable<NonNullable<BankFeed["connection"]>["status"]>;
export const CONNECTION_STATES: Record<ConnectionStatus, string> = {
  PendingAuth: "waiting for you to finish connecting",
  Linked: "linked",
  Unlinked: "disconnected",
  Deauthorized: "access withdrawn",
};

const ACCOUNT_TYPES: Record<string, string> = {
  checking: "Checking",
  savings: "Savings",
  creditCard: "Credit card",
  loan: "Loan",
  prepaidCard: "Prepaid card",
};

/** "Checking ending 6789 · USD" */
export function accountDetail(account: FeedAccount): string {
  const type = ACCOUNT_TYPES[account.accountType] ?? account.accountType;
  return `${type} ending ${account.accountNumberLast4} · ${account.currency}`;
}
