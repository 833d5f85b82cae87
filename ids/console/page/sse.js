/**
 * Server-Sent Events read with `fetch()`: `EventSource` cannot send an `Authorization` header,
 * and the token must stay out of URLs. The parser follows the HTML standard's event stream
 * format (fields `event`, `data`, `id`; comments; LF, CR or CRLF line ends), bounded.
 *
 * @module
 */

/** Longest line or event the parser holds, in characters: past it the stream is refused. */
export const MAX_EVENT_CHARS = 1 << 20;

/** One event of the stream. */
export class SseEvent {
  /**
   * @param {string} type `event:`, `message` when absent
   * @param {string} data the `data:` lines joined with `\n`
   * @param {string} id the last event id at dispatch
   */
  constructor(type, data, id) {
    this.type = type;
    this.data = data;
    this.id = id;
  }
}

/**
 * A parser fed with text as it arrives; `onEvent` is called once per complete event.
 * @param {(event: SseEvent) => void} onEvent
 * @returns {(text: string) => void} feeds one chunk
 * @throws {RangeError} from the feeder, when a line or an event is over {@linkcode MAX_EVENT_CHARS}
 */
export function sseParser(onEvent) {
  let buffer = "";
  let type = "";
  let data = [];
  let size = 0;
  let id = "";
  // A chunk that ended with CR: an LF at the start of the next one belongs to it.
  let afterCr = false;
  const line = (text) => {
    if (text === "") {
      if (data.length > 0) onEvent(new SseEvent(type || "message", data.join("\n"), id));
      type = "";
      data = [];
      size = 0;
      return;
    }
    if (text.startsWith(":")) return;
    const colon = text.indexOf(":");
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") type = value;
    else if (field === "data") {
      size += value.length + 1;
      if (size > MAX_EVENT_CHARS) {
        throw new RangeError("Cannot read the event stream: an event is too long");
      }
      data.push(value);
    } else if (field === "id" && !value.includes("\0")) id = value;
  };
  return (text) => {
    if (afterCr && text.startsWith("\n")) text = text.slice(1);
    afterCr = false;
    buffer += text;
    const lines = buffer.split(/\r\n|\r|\n/);
    buffer = lines.pop() ?? "";
    if (buffer.length > MAX_EVENT_CHARS) {
      throw new RangeError("Cannot read the event stream: a line is too long");
    }
    afterCr = text.endsWith("\r");
    for (const text of lines) line(text);
  };
}

/**
 * Reads the stream at `url` with `headers` until `signal` aborts, reconnecting after an error or
 * an end with `Last-Event-ID` (1 s, doubling up to 30 s while it keeps failing). `onEvent` gets
 * every event; `onStatus` is told when the stream is `"open"` or `"retrying"` (with the error).
 * A 401 ends it, after `onUnauthorized` (the caller logs out).
 * @param {string} url
 * @param {{ headers: Record<string, string>, signal: AbortSignal, onEvent: (event: SseEvent) => void, onStatus?: (status: string, error?: unknown) => void, onUnauthorized?: () => void }} options
 */
export async function followStream(url, options) {
  const { headers, signal, onEvent, onStatus = () => {}, onUnauthorized = () => {} } = options;
  let lastId = "";
  let wait = 1000;
  while (!signal.aborted) {
    try {
      const response = await fetch(url, {
        headers: {
          ...headers,
          Accept: "text/event-stream",
          ...(lastId ? { "Last-Event-ID": lastId } : {}),
        },
        cache: "no-store",
        signal,
      });
      if (response.status === 401) {
        onUnauthorized();
        return;
      }
      const type = response.headers.get("Content-Type") ?? "";
      if (!response.ok || !type.startsWith("text/event-stream")) {
        await response.body?.cancel();
        throw new Error(`Cannot follow the alert stream: HTTP ${response.status}`);
      }
      onStatus("open");
      wait = 1000;
      const feed = sseParser((event) => {
        lastId = event.id;
        onEvent(event);
      });
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        feed(value);
      }
      onStatus("retrying");
    } catch (error) {
      if (signal.aborted) return;
      onStatus("retrying", error);
    }
    await new Promise((resolve) => setTimeout(resolve, wait));
    wait = Math.min(wait * 2, 30_000);
  }
}
