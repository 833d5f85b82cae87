/**
 * The page's requests of the IDS API: every one carries the bearer token, none puts it in a URL.
 *
 * @module
 */

import { followStream } from "@console/sse.js";

/** An answer of the API that is not a success: its status and `error` body. */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {{ code?: string, message?: string, lastSnapshotAgeMs?: number }} error
   */
  constructor(status, error) {
    super(error.message ?? `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.code = error.code ?? "";
    this.error = error;
  }
}

/** The API as the page reads it. */
export class Api {
  #headers;
  #onUnauthorized;

  /**
   * @param {string} token the bearer token
   * @param {() => void} onUnauthorized called when the API refuses the token (401)
   */
  constructor(token, onUnauthorized) {
    this.#headers = { Authorization: `Bearer ${token}` };
    this.#onUnauthorized = onUnauthorized;
  }

  /**
   * GETs `path` (relative to the page, `v1/...`) and returns its JSON body.
   * @param {string} path
   * @param {Record<string, string | number | boolean | undefined>} [query]
   * @throws {ApiError} on any status but 200
   */
  async get(path, query = {}) {
    const search = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value !== undefined) search.set(key, String(value));
    }
    const url = search.size > 0 ? `${path}?${search}` : path;
    const response = await fetch(url, { headers: this.#headers, cache: "no-store" });
    if (response.status === 401) this.#onUnauthorized();
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new ApiError(response.status, body.error ?? {});
    return body;
  }

  /**
   * Follows the alert stream until `signal` aborts: `onChange` gets each alert change as the
   * API sends it (`{ id, kind, at, alert, previousSeverity? }`).
   * @param {{ signal: AbortSignal, onChange: (change: object) => void, onStatus?: (status: string) => void }} options
   */
  alertStream({ signal, onChange, onStatus }) {
    return followStream("v1/alerts/stream", {
      headers: this.#headers,
      signal,
      onStatus,
      onEvent: (event) => {
        if (event.type !== "alert") return;
        try {
          onChange(JSON.parse(event.data));
        } catch {
          // not an alert change: ignored
        }
      },
      onUnauthorized: this.#onUnauthorized,
    });
  }
}
