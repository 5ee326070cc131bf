/**
 * The demo: the business's bank feed with each account's status and the connected count; the accounting
 * software to feed, and the next step for it (the view's `action`): a link for QuickBooks Online, signing in
 * then mapping for Xero and the like, a code for Sage; disconnecting, renaming, and live updates.
 */
import { ApiError, BankFeedApi } from "./api.js";
import { byId, describe, fromTemplate, part, showProblem } from "./dom.js";
import { watchBankFeed } from "./events.js";
import { MappingCard } from "./mapping.js";
import { PLATFORMS, connectLabel, isPlatformName, preview } from "./platforms.js";
import { SageCard } from "./sage.js";
import { CONNECTION_STATES, STATUS_LABELS, accountDetail } from "./words.js";
const LIVENESS = {
    live: "Live: this page updates as soon as your accounts change.",
    polling: "Checking for changes every few seconds.",
};
/** Answers after which the user goes to the link: the rest are taken on this page. */
const STAY_HERE = new Set(["map_accounts", "enter_code_in_sage", "confirm_in_sage", "none"]);
const dates = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeZone: "UTC" });
const page = {
    signedIn: byId("signed-in", HTMLElement),
    problem: byId("problem", HTMLParagraphElement),
    summary: byId("summary", HTMLElement),
    count: byId("connected-count", HTMLParagraphElement),
    message: byId("action-message", HTMLParagraphElement),
    action: byId("action", HTMLButtonElement),
    connection: byId("connection-status", HTMLParagraphElement),
    software: byId("software", HTMLElement),
    softwareForm: byId("software-form", HTMLFormElement),
    platform: byId("platform", HTMLSelectElement),
    platformHint: byId("platform-hint", HTMLParagraphElement),
    softwareProblem: byId("software-problem", HTMLParagraphElement),
    connect: byId("connect", HTMLButtonElement),
    disconnect: byId("disconnect", HTMLButtonElement),
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
    disconnectDialog: byId("disconnect-dialog", HTMLDialogElement),
    disconnectTitle: byId("disconnect-title", HTMLHeadingElement),
    disconnectExplain: byId("disconnect-explain", HTMLParagraphElement),
    disconnectForm: byId("disconnect-form", HTMLFormElement),
    disconnectProblem: byId("disconnect-problem", HTMLParagraphElement),
    disconnectConfirm: byId("disconnect-confirm", HTMLButtonElement),
    disconnectCancel: byId("disconnect-cancel", HTMLButtonElement),
};
const api = new BankFeedApi(await demoToken());
const sage = new SageCard(api);
const mapping = new MappingCard(api, refresh);
const NEXT_STEPS = {
    connect: undefined, // the accounting-software card
    connect_new_accounts: {
        label: (platform) => `Add accounts to ${platform}`,
        choose: true,
        take: async (chosen) => follow(await api.addAccounts(chosen)),
    },
    finish_in_quickbooks: { label: () => "Continue in QuickBooks", choose: false, take: openLink },
    authorize: { label: (platform) => `Sign in to ${platform}`, choose: false, take: openLink },
    map_accounts: undefined, // the mapping card
    enter_code_in_sage: undefined, // the Sage card
    confirm_in_sage: undefined, // the Sage card
    reconnect: {
        label: (platform) => `Reconnect to ${platform}`,
        choose: false,
        take: async () => follow(await api.reconnect()),
    },
    none: undefined,
};
let feed;
let etag;
let readFailed = false;
let reading = Promise.resolve();
let renaming;
/** The platform picked in the select; undefined: the feed's own. */
let picked;
const unticked = new Set();
page.platform.append(...Object.entries(PLATFORMS).map(([name, platform]) => new Option(platform.label, name)));
page.platform.addEventListener("change", () => {
    picked = isPlatformName(page.platform.value) ? page.platform.value : undefined;
    showProblem(page.softwareProblem, undefined);
    if (feed !== undefined)
        render(feed);
});
page.softwareForm.addEventListener("submit", (event) => {
    event.preventDefault();
    void connect();
});
page.action.addEventListener("click", () => void takeNextStep());
page.disconnect.addEventListener("click", openDisconnect);
page.disconnectForm.addEventListener("submit", (event) => {
    event.preventDefault();
    void disconnect();
});
page.disconnectCancel.addEventListener("click", () => page.disconnectDialog.close());
page.renameForm.addEventListener("submit", (event) => {
    event.preventDefault();
    void saveName();
});
page.renameCancel.addEventListener("click", () => page.renameDialog.close());
refresh();
watchBankFeed(() => api.events(), refresh, (state) => (page.liveness.textContent = LIVENESS[state]));
async function demoToken() {
    // `bankfeeds-bff dev` hands out the demo user's token; a real app gets one from its identity provider.
    const response = await fetch("/demo/token").catch(() => undefined);
    if (!response?.ok) {
        showProblem(page.problem, "Could not sign in as the demo user: is `bankfeeds-bff dev` running?");
        throw new Error("GET /demo/token failed");
    }
    return (await response.json()).token;
}
/** Re-read the bank feed (a cheap 304 when nothing changed); reads run one after another. */
function refresh() {
    reading = reading.then(read);
}
async function read() {
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
    }
    catch (error) {
        readFailed = true;
        showProblem(page.problem, `Could not load your bank feed. ${describe(error)}`);
    }
}
function render(feed) {
    const platform = feed.platformName ?? "your accounting software";
    const connected = `${feed.connectedCount} of ${feed.accounts.length} accounts connected`;
    page.signedIn.textContent = `Signed in as the demo user of ${feed.businessName}`;
    page.count.textContent = feed.platformName ? `${connected} to ${feed.platformName}` : connected;
    page.message.textContent = feed.actionMessage ?? `All set: your transactions flow into ${platform}.`;
    const connectionStatus = feed.connection?.status;
    page.connection.hidden = !connectionStatus;
    page.connection.textContent = connectionStatus
        ? `${platform} connection: ${CONNECTION_STATES[connectionStatus]}`
        : "";
    page.summary.setAttribute("aria-busy", "false");
    const choosing = isChoosing(feed);
    page.accounts.classList.toggle("choosing", choosing);
    page.includeHint.hidden = !choosing;
    page.accounts.tBodies[0]?.replaceChildren(...feed.accounts.map((account) => accountRow(account, feed)));
    renderSoftware(feed);
    renderAction(feed);
    sage.render(feed);
    mapping.render(feed);
}
function accountRow(account, feed) {
    const row = fromTemplate(page.rowTemplate, HTMLTableRowElement);
    row.id = `account-${account.accountId}`;
    row.dataset["status"] = account.status;
    part(row, ".name").textContent = account.accountName;
    part(row, ".detail").textContent = accountDetail(account);
    const target = account.targetAccount;
    part(row, ".target").textContent =
        target && feed.platformName ? `Into ${target.name ?? "a new account"} in ${feed.platformName}` : "";
    part(row, ".status").textContent = STATUS_LABELS[account.status];
    part(row, ".start").textContent = account.feedStartDate ? dates.format(new Date(account.feedStartDate)) : "—";
    const include = part(row, ".include", HTMLInputElement);
    if (isChoosing(feed) && canInclude(account, feed)) {
        include.checked = !unticked.has(account.accountId);
        include.setAttribute("aria-label", `Include ${account.accountName}`);
        include.addEventListener("change", () => {
            if (include.checked)
                unticked.delete(account.accountId);
            else
                unticked.add(account.accountId);
            renderSoftware(feed);
            renderAction(feed);
        });
    }
    else {
        include.remove();
    }
    const rename = part(row, ".rename");
    rename.setAttribute("aria-label", `Rename ${account.accountName}`);
    rename.addEventListener("click", () => openRename(account));
    return row;
}
/** Made at Codat and not stopped: another platform needs a disconnect first. */
function isLive(feed) {
    const status = feed.connection?.status;
    return Boolean(feed.connection?.connectionId) && status !== "Unlinked" && status !== "Deauthorized";
}
/** The platform the software card would connect to. */
function chosenPlatform(feed) {
    return picked ?? feed.platform ?? undefined;
}
/** Whether the software card offers to connect: nothing connected yet, or another platform picked. */
function offersConnect(feed) {
    return feed.accounts.length > 0 && (feed.action === "connect" || chosenPlatform(feed) !== feed.platform);
}
function isChoosing(feed) {
    return offersConnect(feed) || (NEXT_STEPS[feed.action]?.choose ?? false);
}
/** A new connection may take any account; a live one, those not yet on it. */
function canInclude(account, feed) {
    return !isLive(feed) || offersConnect(feed) || account.status === "not_added";
}
/** The accounts the user may send and left ticked. */
function chosen(feed) {
    return feed.accounts
        .filter((account) => canInclude(account, feed) && !unticked.has(account.accountId))
        .map((account) => account.accountId);
}
function renderSoftware(feed) {
    const platform = chosenPlatform(feed);
    const live = isLive(feed);
    const current = feed.platformName ?? "";
    page.software.hidden = feed.accounts.length === 0;
    page.platform.value = platform ?? "";
    if (platform === undefined) {
        page.platformHint.textContent = "Choose your accounting software to continue.";
    }
    else if (live && platform !== feed.platform) {
        const other = PLATFORMS[platform].label;
        page.platformHint.textContent = `${goesTo(feed)}: disconnect from it before you connect to ${other}.`;
    }
    else if (live) {
        page.platformHint.textContent = `${goesTo(feed)}. To use other software instead, disconnect first.`;
    }
    else {
        page.platformHint.textContent = preview(platform);
    }
    page.connect.hidden = !offersConnect(feed);
    page.connect.textContent = platform ? connectLabel(platform) : "Connect";
    page.connect.disabled = platform === undefined || chosen(feed).length === 0;
    page.disconnect.hidden = !live;
    page.disconnect.textContent = `Disconnect from ${current}`;
}
/** Where the feed goes, or will once the user finishes connecting. */
function goesTo(feed) {
    const authorized = feed.connection?.status !== "PendingAuth";
    return authorized ? `Your bank feed goes to ${feed.platformName}` : `You are connecting to ${feed.platformName}`;
}
function renderAction(feed) {
    const step = offersConnect(feed) ? undefined : NEXT_STEPS[feed.action];
    page.action.hidden = step === undefined;
    page.action.textContent = step?.label(feed.platformName ?? "your accounting software") ?? "";
    page.action.disabled = step?.choose === true && chosen(feed).length === 0;
}
async function connect() {
    const platform = feed && chosenPlatform(feed);
    if (feed === undefined || platform === undefined) {
        return;
    }
    page.connect.disabled = true;
    showProblem(page.softwareProblem, undefined);
    try {
        const answer = await api.connect(platform, chosen(feed));
        forgetPick();
        follow(answer);
    }
    catch (error) {
        const inUse = error instanceof ApiError && error.code === "platform_in_use";
        showProblem(page.softwareProblem, inUse ? platformInUse(feed, platform) : describe(error));
        renderSoftware(feed);
    }
}
/** Back to the feed's own platform. The view may already show what the call changed (the live update can
 * beat the answer, and the next read is then a 304): render it again rather than wait for a change. */
function forgetPick() {
    picked = undefined;
    if (feed !== undefined)
        render(feed);
}
function platformInUse(feed, platform) {
    const current = feed.platformName ?? "other software";
    return (`Your bank feed already goes to ${current}, and a bank account can feed only one set of books (or its ` +
        `transactions would be counted twice). Disconnect from ${current} first, then connect to ` +
        `${PLATFORMS[platform].label}.`);
}
async function takeNextStep() {
    const step = feed && NEXT_STEPS[feed.action];
    if (feed === undefined || step === undefined) {
        return;
    }
    page.action.disabled = true;
    showProblem(page.problem, undefined);
    try {
        await step.take(chosen(feed));
    }
    catch (error) {
        showProblem(page.problem, describe(error));
        renderAction(feed);
    }
}
async function openLink() {
    const { linkUrl } = await api.link();
    window.location.assign(linkUrl);
}
/** After connecting: to the link, or the Sage code here; the view then says what is next. */
function follow(answer) {
    if (answer.linkUrl !== null && !STAY_HERE.has(answer.action)) {
        window.location.assign(answer.linkUrl);
        return;
    }
    if (answer.sageCode) {
        sage.open(answer.sageCode);
    }
    refresh();
}
function openDisconnect() {
    const platform = feed?.platformName ?? "your accounting software";
    const sent = feed?.connection?.status === "PendingAuth"
        ? `Nothing has gone to ${platform} yet.`
        : `Your transactions stop going to ${platform}; what is already there stays.`;
    page.disconnectTitle.textContent = `Disconnect from ${platform}?`;
    page.disconnectExplain.textContent = `${sent} You can then connect again, to ${platform} or to other software.`;
    showProblem(page.disconnectProblem, undefined);
    page.disconnectDialog.showModal();
    page.disconnectCancel.focus(); // the safe choice first
}
async function disconnect() {
    page.disconnectConfirm.disabled = true;
    try {
        await api.disconnect();
        page.disconnectDialog.close();
        showProblem(page.softwareProblem, undefined);
        forgetPick();
        refresh();
        page.platform.focus();
    }
    catch (error) {
        showProblem(page.disconnectProblem, describe(error));
    }
    finally {
        page.disconnectConfirm.disabled = false;
    }
}
function openRename(account) {
    renaming = account;
    page.renameName.value = account.accountName;
    showProblem(page.renameProblem, undefined);
    page.renameDialog.showModal();
    page.renameName.select();
}
async function saveName() {
    if (renaming === undefined) {
        return;
    }
    page.renameSave.disabled = true;
    try {
        await api.rename(renaming.accountId, page.renameName.value.trim());
        page.renameDialog.close();
        refresh();
    }
    catch (error) {
        showProblem(page.renameProblem, describe(error));
    }
    finally {
        page.renameSave.disabled = false;
    }
}
