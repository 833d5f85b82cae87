/**
 * The web console, served by the IDS at `/` on the API's address: a login form, then the
 * guests, their alerts as they happen and each guest's processes, modules, sockets and files,
 * read from the REST API with the bearer token.
 *
 * Only the login form and what it needs (`/`, `console/login.js`, `console/login.css`) are served
 * without the token. The form fetches `console/app.json` with it: the page's modules (plain ES
 * modules, `page/*.js`, importing each other as `@console/NAME.js`) and its style, which it runs
 * through an import map of blob URLs. The token stays in the tab's `sessionStorage`, never in a
 * URL or a cookie. The page's files are imported as text, so `deno compile` embeds them.
 *
 * ```ts
 * const pages = consolePages({ auth });
 * app.use("/", pages);
 * app.use("/console/*", pages);
 * ```
 *
 * @module
 */

import type { Context, MiddlewareHandler } from "hono";
import INDEX from "./page/index.html" with { type: "text" };
import LOGIN_JS from "./page/login.js" with { type: "text" };
import LOGIN_CSS from "./page/login.css" with { type: "text" };
import APP_CSS from "./page/app.css" with { type: "text" };
import ALERTS from "./page/alerts.js" with { type: "text" };
import API from "./page/api.js" with { type: "text" };
import APP from "./page/app.js" with { type: "text" };
import CHART from "./page/chart.js" with { type: "text" };
import DOM from "./page/dom.js" with { type: "text" };
import FORMAT from "./page/format.js" with { type: "text" };
import GUEST from "./page/guest.js" with { type: "text" };
import GUESTS from "./page/guests.js" with { type: "text" };
import PROCESS_TREE from "./page/process_tree.js" with { type: "text" };
import SSE from "./page/sse.js" with { type: "text" };
import STATUS from "./page/status.js" with { type: "text" };
import TREE from "./page/tree.js" with { type: "text" };

/** The page's modules by name, as `console/app.json` serves them. */
export const MODULES: Readonly<Record<string, string>> = {
  "alerts.js": ALERTS,
  "api.js": API,
  "app.js": APP,
  "chart.js": CHART,
  "dom.js": DOM,
  "format.js": FORMAT,
  "guest.js": GUEST,
  "guests.js": GUESTS,
  "process_tree.js": PROCESS_TREE,
  "sse.js": SSE,
  "status.js": STATUS,
  "tree.js": TREE,
};

/** The paths served without the token: the login form and what it needs. */
export const PUBLIC_PATHS = ["/", "/console/login.js", "/console/login.css"] as const;

/** The path of the page's modules and style, served with the token only. */
export const APP_PATH = "/console/app.json";

const BUNDLE = JSON.stringify({ modules: MODULES, style: APP_CSS });

/** Headers of every answer of the console. */
const COMMON = {
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
  "X-Frame-Options": "DENY",
};

/**
 * The page's policy: scripts and styles only from the console itself, the import map and the
 * style element the login script adds (their nonce), and the modules' blob URLs; requests only
 * to the API itself; no frames, no forms posted anywhere, no base URL.
 */
function policy(nonce: string): string {
  return [
    "default-src 'none'",
    `script-src 'self' 'nonce-${nonce}' blob:`,
    `style-src 'self' 'nonce-${nonce}'`,
    "connect-src 'self'",
    "img-src 'self' data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join("; ");
}

function nonce(): string {
  return btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
}

function asset(c: Context, body: string, type: string): Response {
  return c.body(body, 200, { ...COMMON, "Content-Type": type, "Cache-Control": "no-cache" });
}

/** Options of {@linkcode consolePages}. */
export interface ConsoleOptions {
  /** The API's bearer-token middleware: it guards everything but the login form. */
  auth: MiddlewareHandler;
}

/**
 * A middleware that serves the console's pages (`GET` of {@linkcode PUBLIC_PATHS} and
 * {@linkcode APP_PATH}, the latter through `auth`) and passes every other request on. Mount it
 * on `/` and `/console/*`.
 */
export function consolePages(options: ConsoleOptions): MiddlewareHandler {
  const { auth } = options;
  return async (c, next) => {
    if (c.req.method !== "GET") return await next();
    switch (c.req.path) {
      case "/": {
        const value = nonce();
        return c.html(INDEX.replaceAll("{{NONCE}}", value), 200, {
          ...COMMON,
          "Content-Security-Policy": policy(value),
          "Cache-Control": "no-store",
        });
      }
      case "/console/login.js":
        return asset(c, LOGIN_JS, "text/javascript; charset=utf-8");
      case "/console/login.css":
        return asset(c, LOGIN_CSS, "text/css; charset=utf-8");
      case APP_PATH: {
        // The auth middleware answers (or throws) a refusal itself; it calls next only to pass.
        let passed = false;
        const refused = await auth(c, () => {
          passed = true;
          return Promise.resolve();
        });
        if (!passed) return refused ?? c.body(null, 401);
        return c.body(BUNDLE, 200, {
          ...COMMON,
          "Content-Type": "application/json",
          "Cache-Control": "no-store",
        });
      }
      default:
        return await next();
    }
  };
}
