/**
 * The mapping card, for the platforms Codat maps (Xero, NetSuite, FreeAgent, Exact): each bank account's
 * account in the books, chosen here from GET /v1/bank-feed/mapping and saved with
 * POST /v1/bank-feed/accounts/{id}/mapping. Mapped accounts show `connecting`, then `connected`, as the
 * view's live updates say.
 */
import { ApiError, type BankFeed, type BankFeedApi, type Mapping, type MappingAccount } from "./api.js";
import { byId, describe, fromTemplate, part, showProblem } from "./dom.js";
import { STATUS_LABELS, accountDetail } from "./words.js";

/** The select's value for "Create a new account" (`targetAccountId` null). */
const NEW_ACCOUNT = "";

interface RowError {
  text: string;
  /** Whether the API named `targetAccountId`, the select. */
  onTarget: boolean;
}

export class MappingCard {
  private readonly card = byId("mapping", HTMLElement);
  private readonly intro = byId("mapping-intro", HTMLParagraphElement);
  private readonly problem = byId("mapping-problem", HTMLParagraphElement);
  private readonly list = byId("mapping-list", HTMLUListElement);
  private readonly template = byId("mapping-row", HTMLTemplateElement);
  private feed: BankFeed | undefined;
  private loaded: Mapping | undefined;
  /** The unmapped accounts of the mapping being read, so that one view change reads it once. */
  private loading: string | undefined;
  private readonly saving = new Set<string>();
  private readonly errors = new Map<string, RowError>();

  /** `mapped`: called once an account is mapped (the view has changed). */
  constructor(
    private readonly api: BankFeedApi,
    private readonly mapped: () => void,
  ) {}

  render(feed: BankFeed): void {
    this.feed = feed;
    const settling = feed.accounts.some((a) => a.status === "connecting" && a.targetAccount);
    const mapping = feed.action === "map_accounts" || settling; // mapped ones stay in sight until connected
    this.card.hidden = !mapping;
    if (!mapping) {
      this.loaded = undefined;
      return;
    }
    const platform = platformOf(feed);
    this.intro.textContent =
      `For each bank account, choose the ${platform} account its transactions go to, or create a new one. ` +
      `${platform} offers only accounts of the same kind and currency.`;
    const unmapped = unmappedInView(feed);
    if (this.loaded === undefined || unmappedIn(this.loaded) !== unmapped) {
      void this.load(unmapped);
    } else {
      this.paint();
    }
  }

  private async load(unmapped: string): Promise<void> {
    if (this.loading === unmapped) {
      return;
    }
    this.loading = unmapped;
    this.list.setAttribute("aria-busy", "true");
    try {
      const mapping = await this.api.mapping();
      if (this.loading === unmapped) {
        this.loaded = mapping;
        showProblem(this.problem, undefined);
        this.paint();
      }
    } catch (error) {
      if (this.loading === unmapped) {
        const signIn = error instanceof ApiError && error.code === "not_authorized";
        showProblem(this.problem, signIn ? `Sign in to ${platformOf(this.feed)} first.` : describe(error));
      }
    } finally {
      if (this.loading === unmapped) {
        this.loading = undefined;
        this.list.setAttribute("aria-busy", "false");
      }
    }
  }

  /** Rows afresh from the mapping and the view, keeping what the user picked and where the focus was. */
  private paint(): void {
    const { feed, loaded } = this;
    if (feed === undefined || loaded === undefined) {
      return;
    }
    const picked = new Map(Array.from(this.list.querySelectorAll("select"), (select) => [select.id, select.value]));
    const focused = this.list.contains(document.activeElement) ? document.activeElement?.id : undefined;
    this.list.replaceChildren(...loaded.accounts.map((account) => this.row(account, feed, picked)));
    if (focused) {
      const again = document.getElementById(focused);
      (again?.checkVisibility() ? again : this.list.querySelector("select"))?.focus();
    }
  }

  private row(account: MappingAccount, feed: BankFeed, picked: Map<string, string>): HTMLLIElement {
    const id = account.accountId;
    const shown = feed.accounts.find((a) => a.accountId === id);
    const name = shown?.accountName ?? account.accountName;
    const li = fromTemplate(this.template, HTMLLIElement);
    li.id = `mapping-${id}`;
    part(li, ".name").textContent = name;
    part(li, ".detail").textContent = shown ? accountDetail(shown) : account.currency;

    const form = part(li, ".map-form", HTMLFormElement);
    const mapped = part(li, ".mapped");
    const target = shown?.targetAccount ?? account.targetAccount;
    form.hidden = target !== null && target !== undefined;
    mapped.hidden = !form.hidden;
    if (target) {
      li.dataset["status"] = shown?.status ?? "connecting";
      part(mapped, ".target-name").textContent = target.name ?? "a new account";
      part(mapped, ".status").textContent = STATUS_LABELS[shown?.status ?? "connecting"];
      return li;
    }

    const select = part(form, ".target-select", HTMLSelectElement);
    select.id = `target-${id}`;
    const label = part(form, ".target-label", HTMLLabelElement);
    label.htmlFor = select.id;
    label.textContent = `${platformOf(feed)} account for ${name}`;
    select.append(
      ...account.options.map((option) => new Option(optionText(option, account.currency), option.id)),
      new Option("Create a new account", NEW_ACCOUNT),
    );
    const before = picked.get(select.id);
    if (before !== undefined && Array.from(select.options).some((option) => option.value === before)) {
      select.value = before;
    }
    const button = part(form, ".map", HTMLButtonElement);
    button.id = `map-${id}`;
    button.setAttribute("aria-label", `Map ${name}`);
    button.disabled = this.saving.has(id);
    const error = this.errors.get(id);
    const said = part(form, ".field-error");
    said.id = `map-error-${id}`;
    showProblem(said, error?.text);
    select.setAttribute("aria-describedby", said.id);
    select.setAttribute("aria-invalid", String(error?.onTarget ?? false));
    select.addEventListener("change", () => {
      this.errors.delete(id); // a new choice: the refusal was about the old one
      showProblem(said, undefined);
      select.setAttribute("aria-invalid", "false");
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      void this.map(id, select.value === NEW_ACCOUNT ? null : select.value);
    });
    return li;
  }

  private async map(accountId: string, targetAccountId: string | null): Promise<void> {
    this.saving.add(accountId);
    this.errors.delete(accountId);
    this.paint();
    try {
      await this.api.map(accountId, targetAccountId);
      this.mapped();
    } catch (error) {
      const refused = rowError(error);
      this.errors.set(accountId, refused);
      if (refused.onTarget) {
        this.loaded = undefined; // its options may have changed: read them again
        void this.load(this.feed ? unmappedInView(this.feed) : "");
      }
    } finally {
      this.saving.delete(accountId);
      this.paint();
    }
  }
}

/** The API's reasons, by field: a 422 names the field (`targetAccountId`, or Codat's own) and why. */
function rowError(error: unknown): RowError {
  const fields = error instanceof ApiError ? (error.body?.fields ?? []) : [];
  if (fields.length === 0) {
    return { text: describe(error), onTarget: false };
  }
  return {
    text: fields.map((field) => reason(field.field, field.reason)).join(" "),
    onTarget: fields.some((field) => isTarget(field.field)),
  };
}

/** A refused target's reason is the rule, then what a developer should call (`rule: …`): the user gets the
 * rule and what to do on this screen. */
function reason(field: string, text: string): string {
  if (isTarget(field)) {
    return `${sentence(text.split(":")[0] ?? text)} Choose another account, or create a new one.`;
  }
  return sentence(text);
}

function isTarget(field: string): boolean {
  return field.endsWith("targetAccountId");
}

function sentence(text: string): string {
  const trimmed = text.trim();
  const capital = trimmed.charAt(0).toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(capital) ? capital : `${capital}.`;
}

function optionText(option: MappingAccount["options"][number], currency: string): string {
  const name = option.name ?? option.id;
  if (option.balance === null || option.balance === undefined) {
    return name;
  }
  const money = new Intl.NumberFormat(undefined, { style: "currency", currency });
  return `${name} (balance ${money.format(Number(option.balance))})`;
}

function platformOf(feed: BankFeed | undefined): string {
  return feed?.platformName ?? "your accounting software";
}

/** The accounts on the feed with no account in the books yet, as the view says, as a comparable key. */
function unmappedInView(feed: BankFeed): string {
  return key(feed.accounts.filter((a) => a.status !== "not_added" && !a.targetAccount).map((a) => a.accountId));
}

function unmappedIn(mapping: Mapping): string {
  return key(mapping.accounts.filter((a) => !a.targetAccount).map((a) => a.accountId));
}

function key(ids: string[]): string {
  return ids.sort().join(" ");
}
