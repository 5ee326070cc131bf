export const STATUS_LABELS = {
    not_added: "not added",
    pending: "pending",
    connecting: "connecting",
    connected: "connected",
    disconnected: "disconnected",
    unknown: "unknown",
};
export const CONNECTION_STATES = {
    PendingAuth: "waiting for you to finish connecting",
    Linked: "linked",
    Unlinked: "disconnected",
    Deauthorized: "access withdrawn",
};
const ACCOUNT_TYPES = {
    checking: "Checking",
    savings: "Savings",
    creditCard: "Credit card",
    loan: "Loan",
    prepaidCard: "Prepaid card",
};
/** "Checking ending 6789 · USD" */
export function accountDetail(account) {
    const type = ACCOUNT_TYPES[account.accountType] ?? account.accountType;
    return `${type} ending ${account.accountNumberLast4} · ${account.currency}`;
}
