/**
 * The demo: the business's bank feed with each account's status and the connected count, the next step
 * (connect, add accounts, finish in QuickBooks, reconnect), renaming, and live updates.
 */
import { ApiError, BankFeedApi, type BankFeed, type FeedAccount } from "./api.js";
import { watchBankFeed, type Liveness } from "./events.js";

interface NextStep {
  label: string;
  /** Whether the user ticks which not-yet-added accounts to send. */
  choose: boolean;
  link: (chosen: string[]) => Promise<{ linkUrl: string | null }>;
}

const STATUS_LABELS: Record<FeedAccount["status"], string> = {
  not_added: "not added",
  pending: "pending",
  connecting: "connecting",
  connected: "connected",
  disconnected: "disconnected",
  unknown: "unknown",
};
const ACCOUNT_TYPES: Record<string, string> = {
  checking: "Checking",
  savings: "Savings",
  creditCard: "Credit card",
  loan: "Loan",
  prepaidCard: "Prepaid card",
};
const LIVENESS: Record<Liveness, string> = {
  live: "Live: this page updates as soon as your accounts change.",
  polling: "Checking for changes every few seconds.",
};
const dates = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeZone: "UTC" });

const page = {
  signedIn: byId("signed-in", HTMLElement),
  problem: byId("problem", HTMLParagraphElement),
  summary: byId("summary", HTMLElement),
  count: byId("connected-count", HTMLParagraphElement),
  message: byId("action-message", HTMLParagraphElement),
  action: byId("action", HTMLButtonElement),
  connection: byId("connection-status", HTMLParagraphElement),
  accounts: byId("accounts", HTMLTableElement),
  includeHint: byId("include-hint", HTMLParagraphElement),
  rowTemplate: byId("account-row", HTMLTemplateElement),
  liveness: byId("liveness", HTMLParagraphElement),
  renameDialog: byId("rename-dialog", HTMLDialogElement),
  renameForm: byId("rename-form", HTMLFormElement),
  renameName: byId("rename-name", HTMLInputElement),
  renameProblem: byId("rename-problem", HTMLParagraphElement),
  renameSave: byId("rename-save", HTMLButtonElement),
  renameCancel: byId("rename-cancel", HTMLButtonElement),
};

const api = new BankFeedApi(await demoToken());
const NEXT_STEPS: Record<BankFeed["action"], NextStep | undefined> = {
  connect: { label: "Connect account to QuickBooks", choose: true, link: (chosen) => api.connect(chosen) },
  connect_new_accounts: { label: "Add accounts to QuickBooks", choose: true, link: (chosen) => api.addAccounts(chosen) },
  finish_in_quickbooks: { label: "Continue in QuickBooks", choose: false, link: () => api.link() },
  authorize: { label: "Sign in to allow the connection", choose: false, link: () => api.link() },
  map_accounts: undefined,
  enter_code_in_sage: undefined,
  confirm_in_sage: undefined,
  reconnect: { label: "Reconnect", choose: false, link: () => api.reconnect() },
  none: undefined,
};

let feed: BankFeed | undefined;
let etag: string | undefined;
let readFailed = false;
let reading = Promise.resolve();
let renaming: FeedAccount | undefined;
const unticked = new Set<string>();

page.action.addEventListener("click", () => void goToQuickBooks());
page.renameForm.addEventListener("submit", (event) => {
  event.preventDefault();
  void saveName();
});
page.renameCancel.addEventListener("click", () => page.renameDialog.close());
refresh();
watchBankFeed(() => api.events(), refresh, (state) => (page.liveness.textContent = LIVENESS[state]));

async function demoToken(): Promise<string> {
  // `bankfeeds-bff dev` hands out the demo user's token; a real app gets one from its identity provider.
  const response = await fetch("/demo/token").catch(() => undefined);
  if (!response?.ok) {
    showProblem(page.problem, "Could not sign in as the demo user: is `bankfeeds-bff dev` running?");
    throw new Error("GET /demo/token failed");
  }
  return ((await response.json()) as { token: string }).token;
}

/** Re-read the bank feed (a cheap 304 when nothing changed); reads run one after another. */
function refresh(): void {
  reading = reading.then(read);
}

async function read(): Promise<void> {
  try {
    const latest = await api.feed(etag);
    if (latest !== undefined) {
      ({ feed, etag } = latest);
      render(latest.feed);
    }
    if (readFailed) {
      readFailed = false;
      showProblem(page.problem, undefined);
    }
  } catch (error) {
    readFailed = true;
    showProblem(page.problem, `Could not load your bank feed. ${describe(error)}`);
  }
}

function render(feed: BankFeed): void {
  const step = NEXT_STEPS[feed.action];
  page.signedIn.textContent = `Signed in as the demo user of ${feed.businessName}`;
  page.count.textContent = `${feed.connectedCount} of ${feed.accounts.length} accounts connected to QuickBooks`;
  page.message.textContent = feed.actionMessage ?? "All set: your transactions flow into QuickBooks Online.";
  const connectionStatus = feed.connection?.status;
  page.connection.hidden = !connectionStatus;
  page.connection.textContent = connectionStatus ? `QuickBooks connection: ${connectionStatus}` : "";
  page.summary.setAttribute("aria-busy", "false");
  page.accounts.classList.toggle("choosing", step?.choose ?? false);
  page.includeHint.hidden = !step?.choose;
  page.accounts.tBodies[0]?.replaceChildren(...feed.accounts.map((account) => accountRow(account, feed)));
  renderAction(feed);
}

function accountRow(account: FeedAccount, feed: BankFeed): HTMLTableRowElement {
  const row = page.rowTemplate.content.firstElementChild?.cloneNode(true);
  if (!(row instanceof HTMLTableRowElement)) {
    throw new Error("#account-row must hold one <tr>");
  }
  row.id = `account-${account.accountId}`;
  row.dataset["status"] = account.status;
  part(row, ".name").textContent = account.accountName;
  const type = ACCOUNT_TYPES[account.accountType] ?? account.accountType;
  part(row, ".detail").textContent = `${type} ending ${account.accountNumberLast4} · ${account.currency}`;
  part(row, ".status").textContent = STATUS_LABELS[account.status];
  part(row, ".start").textContent = account.feedStartDate ? dates.format(new Date(account.feedStartDate)) : "—";

  const include = part(row, ".include");
  if (include instanceof HTMLInputElement && account.status === "not_added") {
    include.checked = !unticked.has(account.accountId);
    include.setAttribute("aria-label", `Include ${account.accountName}`);
    include.addEventListener("change", () => {
      if (include.checked) unticked.delete(account.accountId);
      else unticked.add(account.accountId);
      renderAction(feed);
    });
  } else {
    include.remove();
  }
  const rename = part(row, ".rename");
  rename.setAttribute("aria-label", `Rename ${account.accountName}`);
  rename.addEventListener("click", () => openRename(account));
  return row;
}

function renderAction(feed: BankFeed): void {
  const step = NEXT_STEPS[feed.action];
  page.action.hidden = step === undefined;
  page.action.textContent = step?.label ?? "";
  page.action.disabled = step?.choose === true && chosen(feed).length === 0;
}

/** The not-yet-added accounts the user left ticked. */
function chosen(feed: BankFeed): string[] {
  return feed.accounts
    .filter((account) => account.status === "not_added" && !unticked.has(account.accountId))
    .map((account) => account.accountId);
}

async function goToQuickBooks(): Promise<void> {
  const step = feed && NEXT_STEPS[feed.action];
  if (feed === undefined || step === undefined) {
    return;
  }
  page.action.disabled = true;
  showProblem(page.problem, undefined);
  try {
    const { linkUrl } = await step.link(chosen(feed));
    if (linkUrl !== null) {
      window.location.assign(linkUrl); // null only for Sage, which this demo does not connect to
    }
  } catch (error) {
    showProblem(page.problem, describe(error));
    renderAction(feed);
  }
}

function openRename(account: FeedAccount): void {
  renaming = account;
  page.renameName.value = account.accountName;
  showProblem(page.renameProblem, undefined);
  page.renameDialog.showModal();
  page.renameName.select();
}

async function saveName(): Promise<void> {
  if (renaming === undefined) {
    return;
  }
  page.renameSave.disabled = true;
  try {
    await api.rename(renaming.accountId, page.renameName.value.trim());
    page.renameDialog.close();
    refresh();
  } catch (error) {
    showProblem(page.renameProblem, describe(error));
  } finally {
    page.renameSave.disabled = false;
  }
}

function showProblem(where: HTMLElement, text: string | undefined): void {
  where.textContent = text ?? "";
  where.hidden = text === undefined;
}

function describe(error: unknown): string {
  if (error instanceof ApiError) {
    return error.message;
  }
  return "The server could not be reached: is `bankfeeds-bff dev` still running?";
}

function byId<T extends HTMLElement>(id: string, type: new () => T): T {
  const element = document.getElementById(id);
  if (!(element instanceof type)) {
    throw new Error(`index.html has no #${id} of the expected kind`);
  }
  return element;
}

function part(row: HTMLElement, selector: string): HTMLElement {
  const element = row.querySelector(selector);
  if (!(element instanceof HTMLElement)) {
    throw new Error(`#account-row has no ${selector}`);
  }
  return element;
}
