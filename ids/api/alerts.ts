/**
 * The alert routes' handlers: the lists, and the Server-Sent Events stream that replays the
 * stored changes after `Last-Event-ID` and then follows the live ones.
 *
 * @module
 */

import type { OpenAPIHono } from "@hono/zod-openapi";
import { type SSEStreamingApi, streamSSE } from "hono/streaming";
import type { AlertChange, Monitor } from "../service/mod.ts";
import * as routes from "./alert_routes.ts";

/** Options of the alert stream. */
export interface AlertStreamOptions {
  /**
   * Interval of the heartbeat comments.
   * @default {15000}
   */
  heartbeatMs?: number;
  /**
   * Live changes one connection may hold while its client has not taken the previous ones;
   * one more drops the connection (the client resumes with Last-Event-ID).
   * @default {1000}
   */
  maxPending?: number;
  /**
   * How long one write may wait for the client before the connection is dropped.
   * @default {60000}
   */
  stallMs?: number;
  /**
   * Ends every open stream when aborted: the service stopping must not wait for its clients to
   * leave (an open stream is an endless request).
   */
  signal?: AbortSignal;
}

/** Changes read from the store per page while replaying. */
const PAGE = 500;

function write(stream: SSEStreamingApi, change: AlertChange): Promise<void> {
  return stream.writeSSE({ id: String(change.id), event: "alert", data: JSON.stringify(change) });
}

/** Streams the changes after `after` (none stored, when undefined), then the live ones. */
async function follow(
  stream: SSEStreamingApi,
  monitor: Monitor,
  after: number | undefined,
  options: Required<Omit<AlertStreamOptions, "signal">> & { signal?: AbortSignal },
): Promise<void> {
  const pending: AlertChange[] = [];
  let done = false;
  let beat = false;
  let writingSince: number | undefined;
  let wake: (() => void) | undefined;
  let unsubscribe = () => {};
  const drop = () => {
    done = true;
    unsubscribe();
    stream.abort();
    wake?.();
  };
  stream.onAbort(() => {
    done = true;
    wake?.();
  });
  if (options.signal?.aborted) drop();
  options.signal?.addEventListener("abort", drop, { once: true });
  unsubscribe = monitor.subscribeAlerts((change) => {
    if (pending.length >= options.maxPending) drop();
    else pending.push(change);
    wake?.();
  });
  const heartbeat = setInterval(() => {
    if (writingSince !== undefined && Date.now() - writingSince > options.stallMs) drop();
    beat = true;
    wake?.();
  }, options.heartbeatMs);
  const send = async (text: string | AlertChange) => {
    writingSince = Date.now();
    if (typeof text === "string") await stream.write(text);
    else await write(stream, text);
    writingSince = undefined;
  };
  try {
    // The id of the last change sent: live changes the replay already sent are skipped.
    let last = 0;
    if (after !== undefined) {
      let cursor = after;
      for (
        let page = monitor.alertsAfter(cursor, PAGE);
        !done;
        page = monitor.alertsAfter(cursor, PAGE)
      ) {
        for (const change of page) {
          if (done) break;
          await send(change);
          cursor = last = change.id;
        }
        if (page.length < PAGE) break;
      }
    }
    while (!done) {
      if (pending.length === 0 && !beat) {
        await new Promise<void>((resolve) => wake = resolve);
        wake = undefined;
      }
      if (beat && !done) {
        beat = false;
        await send(": heartbeat\n\n");
      }
      while (pending.length > 0 && !done) {
        const change = pending.shift()!;
        if (change.id <= last) continue;
        await send(change);
        last = change.id;
      }
    }
  } finally {
    clearInterval(heartbeat);
    unsubscribe();
    options.signal?.removeEventListener("abort", drop);
  }
}

/** Adds the alert routes to `app`. */
export function alertRoutes(app: OpenAPIHono, monitor: Monitor, options: AlertStreamOptions = {}) {
  const settings = {
    heartbeatMs: options.heartbeatMs ?? 15_000,
    maxPending: options.maxPending ?? 1000,
    stallMs: options.stallMs ?? 60_000,
    signal: options.signal,
  };

  // The stream's events are documented though no JSON route answers them.
  app.openAPIRegistry.register("AlertChange", routes.AlertChangeSchema);

  app.openapi(routes.listAlerts, (c) => {
    const { severity, ...query } = c.req.valid("query");
    return c.json({ alerts: monitor.alerts({ ...query, minSeverity: severity }) }, 200);
  });

  app.openapi(routes.listVmAlerts, (c) => {
    const { vm } = c.req.valid("param");
    monitor.vm(vm);
    const { severity, ...query } = c.req.valid("query");
    return c.json({ alerts: monitor.alerts({ ...query, vm, minSeverity: severity }) }, 200);
  });

  app.openapi(routes.alertStream, (c) => {
    const after = c.req.valid("header")["last-event-id"] ?? c.req.valid("query").last_event_id;
    // zod-openapi types a route's answers as the helpers that make them; a stream is neither.
    return streamSSE(c, (stream) => follow(stream, monitor, after, settings)) as never;
  });
}
