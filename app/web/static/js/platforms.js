export const PLATFORMS = {
    "quickbooks-online": { label: "QuickBooks Online", steps: "quickbooks" },
    xero: { label: "Xero", steps: "mapped" },
    sage: { label: "Sage", steps: "sage" },
    netsuite: { label: "Oracle NetSuite", steps: "mapped" },
    freeagent: { label: "FreeAgent", steps: "mapped" },
    exact: { label: "Exact", steps: "mapped" },
};
/** What happens once the user connects, told before they do. */
export function preview(platform) {
    const { label, steps } = PLATFORMS[platform];
    switch (steps) {
        case "quickbooks":
            return `You'll get a one-time username and password, sign in to ${label} with them and pick your accounts there.`;
        case "mapped":
            return (`You'll sign in to ${label} and allow the connection, then choose here the ${label} account each bank ` +
                "account feeds.");
        case "sage":
            return `You'll get a connection ID and a one-time code to type into ${label}, where you pick your accounts.`;
    }
}
/** The button that starts connecting. */
export function connectLabel(platform) {
    const { label, steps } = PLATFORMS[platform];
    switch (steps) {
        case "quickbooks":
            return `Connect to ${label}`;
        case "mapped":
            return `Sign in to ${label}`;
        case "sage":
            return `Get a code for ${label}`;
    }
}
export function isPlatformName(value) {
    return Object.hasOwn(PLATFORMS, value);
}
