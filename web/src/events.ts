/**
 * Live updates from `GET /v1/bank-feed/events`, read with fetch because EventSource cannot send a bearer
 * token. While the stream is down, poll instead, and try the stream again.
 */

const RETRY_MS = 5_000;

export type Liveness = "live" | "polling";

/**
 * Calls `changed` whenever the bank feed may have changed: on each `bank-feed-changed` event, when the stream
 * (re)opens (to catch up on what was missed), and every few seconds while it is down.
 */
export function watchBankFeed(
  open: () => Promise<Response>,
  changed: () => void,
  liveness: (state: Liveness) => void,
): void {
  void (async () => {
    for (;;) {
      try {
        const response = await open();
        if (!response.ok || response.body === null) {
          throw new Error(`the event stream answered ${response.status}`);
        }
        liveness("live");
        for await (const name of eventNames(response.body)) {
          if (name === "ready" || name === "bank-feed-changed") {
            changed();
          }
        }
      } catch {
        // Could not open, or dropped: fall through to polling.
      }
      liveness("polling");
      changed();
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
    }
  })();
}

/** The `event:` names of a text/event-stream body, as they arrive; comments (keep-alives) are skipped. */
async function* eventNames(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) {
      return;
    }
    buffered += decoder.decode(value, { stream: true });
    let end: number;
    while ((end = buffered.indexOf("\n\n")) >= 0) {
      const event = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      const name = event.split("\n").find((line) => line.startsWith("event:"));
      if (name !== undefined) {
        yield name.slice("event:".length).trim();
      }
    }
  }
}
