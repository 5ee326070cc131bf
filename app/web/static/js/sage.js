import { byId, describe, showProblem } from "./dom.js";
const times = new Intl.DateTimeFormat(undefined, { timeStyle: "short" });
export class SageCard {
    api;
    card = byId("sage", HTMLElement);
    heading = byId("sage-heading", HTMLHeadingElement);
    enter = byId("sage-enter", HTMLDivElement);
    confirm = byId("sage-confirm", HTMLDivElement);
    connectionId = byId("sage-connection-id", HTMLElement);
    code = byId("sage-code", HTMLElement);
    expiry = byId("sage-expiry", HTMLParagraphElement);
    newCode = byId("sage-new-code", HTMLButtonElement);
    problem = byId("sage-problem", HTMLParagraphElement);
    /** Kept in memory only: the code is a secret, and a new one is a click away. */
    current;
    expiryTimer;
    constructor(api) {
        this.api = api;
        this.newCode.addEventListener("click", () => void this.fetchCode());
    }
    show(code) {
        this.current = code;
        this.paint();
    }
    /** Straight after connecting: the card before the view says so, and the focus on it. */
    open(code) {
        this.show(code);
        this.card.hidden = this.enter.hidden = false;
        this.confirm.hidden = true;
        this.heading.focus();
    }
    render(feed) {
        const entering = feed.action === "enter_code_in_sage";
        this.card.hidden = !entering && feed.action !== "confirm_in_sage";
        this.enter.hidden = !entering;
        this.confirm.hidden = entering;
        this.heading.textContent = entering ? "Connect in Sage" : "Confirm in Sage";
        if (!entering && this.current?.connectionId === feed.connection?.connectionId) {
            this.current = undefined; // Sage took it (a view of an older connection leaves a new code alone)
        }
        this.connectionId.textContent = this.current?.connectionId ?? feed.connection?.connectionId ?? "";
        this.paint();
    }
    paint() {
        window.clearTimeout(this.expiryTimer);
        const code = this.current;
        const left = code === undefined ? 0 : new Date(code.expiresAt).getTime() - Date.now();
        if (code !== undefined && left > 0) {
            this.connectionId.textContent = code.connectionId;
            this.code.textContent = code.code;
            const until = times.format(new Date(code.expiresAt));
            this.expiry.textContent = `The code works once, until ${until}. A new code replaces it.`;
            this.expiryTimer = window.setTimeout(() => this.paint(), left);
        }
        else {
            this.code.textContent = code === undefined ? "Get a code with the button below." : "Expired: get a new code.";
        }
        this.code.classList.toggle("code", code !== undefined && left > 0);
        this.expiry.hidden = code === undefined || left <= 0;
        this.newCode.textContent = code === undefined ? "Get a code" : "New code";
    }
    async fetchCode() {
        this.newCode.disabled = true;
        showProblem(this.problem, undefined);
        try {
            this.show(await this.api.sageCode());
        }
        catch (error) {
            showProblem(this.problem, describe(error));
        }
        finally {
            this.newCode.disabled = false;
        }
    }
}
