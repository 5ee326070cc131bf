/**
 * The accounting software the demo offers, and how the user connects each: the three ways Codat's bank feeds
 * take (a Record over the API's platform names, so a platform the API adds is a type error until it is here).
 */
import type { BankFeed } from "./api.js";

export type PlatformName = NonNullable<BankFeed["platform"]>;
/** quickbooks: one-time credentials typed into QuickBooks; mapped: sign in, then map here; sage: a code typed into
 * Sage. */
export type Steps = "quickbooks" | "mapped" | "sage";

export interface Platform {
  label: string;
  steps: Steps;
}

export const PLATFORMS: Record<PlatformName, Platform> = {
  "quickbooks-online": { label: "QuickBooks Online", steps: "quickbooks" },
  xero: { label: "Xero", steps: "mapped" },
  sage: { label: "Sage", steps: "sage" },
  netsuite: { label: "Oracle NetSuite", steps: "mapped" },
  freeagent: { label: "FreeAgent", steps: "mapped" },
  exact: { label: "Exact", steps: "mapped" },
};

/** What happens once the user connects, told before they do. */
export function preview(platform: PlatformName): string {
  const { label, steps } = PLATFORMS[platform];
  switch (steps) {
    case "quickbooks":
      return `You'll get a one-time username and password, sign in to ${label} with them and pick your accounts there.`;
    case "mapped":
      return (
        `You'll sign in to ${label} and allow the connection, then choose here the ${label} account each bank ` +
        "account feeds."
      );
    case "sage":
      return `You'll get a connection ID and a one-time code to type into ${label}, where you pick your accounts.`;
  }
}

/** The button that starts connecting. */
export function connectLabel(platform: PlatformName): string {
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

export function isPlatformName(value: string): value is PlatformName {
  return Object.hasOwn(PLATFORMS, value);
}
