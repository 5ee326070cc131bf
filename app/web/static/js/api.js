/** An answer other than 2xx/304, with the API's error body when it sent one. */
export class ApiError extends Error {
    status;
    body;
    constructor(status, body) {
        super(body?.detail ?? `The server answered ${status}.`);
        this.status = status;
        this.body = body;
    }
    /** The API's stable error code (e.g. `platform_in_use`), when it sent its error body. */
    get code() {
        return this.body?.error;
    }
}
export class BankFeedApi {
    token;
    constructor(token) {
        this.token = token;
    }
    /** The bank feed, or `undefined` when it has not changed since `etag` (a 304). */
    async feed(etag) {
        const response = await this.fetch("get", "/v1/bank-feed", etag ? { "If-None-Match": etag } : {});
        if (response.status === 304) {
            return undefined;
        }
        const feed = await answer(response);
        return { feed, etag: response.headers.get("ETag") ?? undefined };
    }
    /** The `bank-feed-changed` event stream; its body is read as it arrives. */
    events() {
        return this.fetch("get", "/v1/bank-feed/events", { Accept: "text/event-stream" });
    }
    /** Every registered account when `accountIds` is empty. */
    connect(platform, accountIds) {
        return this.send("post", "/v1/bank-feed/connect", accountIds.length ? { platform, accountIds } : { platform });
    }
    disconnect() {
        return this.send("post", "/v1/bank-feed/disconnect");
    }
    sageCode() {
        return this.send("post", "/v1/bank-feed/sage-code");
    }
    mapping() {
        return this.send("get", "/v1/bank-feed/mapping");
    }
    /** `targetAccountId` null: a new account in the books. */
    map(accountId, targetAccountId) {
        const path = "/v1/bank-feed/accounts/{account_id}/mapping";
        return this.send("post", path, { targetAccountId }, path.replace("{account_id}", encodeURIComponent(accountId)));
    }
    addAccounts(accountIds) {
        return this.send("post", "/v1/bank-feed/accounts", { accountIds });
    }
    reconnect() {
        return this.send("post", "/v1/bank-feed/reconnect");
    }
    link() {
        return this.send("get", "/v1/bank-feed/link");
    }
    rename(accountId, accountName) {
        const path = "/v1/bank-feed/accounts/{account_id}";
        return this.send("patch", path, { accountName }, path.replace("{account_id}", encodeURIComponent(accountId)));
    }
    async send(method, path, body, url = path) {
        const headers = {};
        if (body !== undefined) {
            headers["Content-Type"] = "application/json";
        }
        if (method !== "get") {
            headers["Idempotency-Key"] = newIdempotencyKey(); // one per click: a retried request replays, a new click acts
        }
        return answer(await this.fetch(method, url, headers, body === undefined ? undefined : JSON.stringify(body)));
    }
    fetch(method, url, headers, body) {
        return fetch(url, {
            method: method.toUpperCase(),
            headers: { ...headers, Authorization: `Bearer ${this.token}` },
            body: body ?? null,
        });
    }
}
async function answer(response) {
    if (!response.ok) {
        const isJson = response.headers.get("Content-Type")?.startsWith("application/json");
        throw new ApiError(response.status, isJson ? (await response.json()) : undefined);
    }
    return (await response.json());
}
/** 128 random bits as hex; crypto.randomUUID() would need a secure context, which plain http://host:port is not. */
function newIdempotencyKey() {
    return Array.from(crypto.getRandomValues(new Uint8Array(16)), (byte) => byte.toString(16).padStart(2, "0")).join("");
}
