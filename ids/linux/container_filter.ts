/**
 * Filters by container, shared by the command line (`ps --cgroup`, `ps --pidns`, `ss --netns`)
 * and the API (`cgroup`, `pidns`, `netns` query parameters): what a value may be, and what it
 * matches. A bad value is refused with the reason, never read as some other filter.
 *
 * @module
 */

import type { Process } from "./processes.ts";

/** Namespace ids are the inode numbers of nsfs: 32 bits, never 0. */
const MAX_NAMESPACE_ID = 0xffff_ffff;
/** Longest cgroup path (PATH_MAX, its NUL left out). */
const MAX_PATH = 4095;

/**
 * A namespace id as `readlink /proc/PID/ns/*` shows it (`net:[4026531840]`): the number alone
 * or in that form.
 * @throws {TypeError} naming `what` and the problem.
 */
export function parseNamespaceId(text: string, what: string): number {
  const digits = /^(?:[a-z_]+:\[(\d{1,10})\]|(\d{1,10}))$/.exec(text);
  const id = digits ? Number(digits[1] ?? digits[2]) : NaN;
  if (!(id >= 1 && id <= MAX_NAMESPACE_ID)) {
    throw new TypeError(
      `Invalid ${what} "${text.slice(0, 64)}": expected a namespace id (1-${MAX_NAMESPACE_ID}, ` +
        "as readlink /proc/PID/ns/... shows it)",
    );
  }
  return id;
}

/**
 * A cgroup path as the `0::` line of /proc/PID/cgroup shows it: absolute, without empty, `.`
 * or `..` components; a trailing `/` is dropped.
 * @throws {TypeError} naming `what` and the problem.
 */
export function parseCgroupPath(text: string, what: string): string {
  const bad = (why: string) =>
    new TypeError(`Invalid ${what} "${text.slice(0, 64)}": ${why} (a path such as /system.slice)`);
  if (text.length > MAX_PATH) throw bad(`longer than ${MAX_PATH} characters`);
  if (!text.startsWith("/")) throw bad("not an absolute path");
  // deno-lint-ignore no-control-regex -- a control character is what is refused
  if (/[\x00-\x1f\x7f]/.test(text)) throw bad("it holds a control character");
  const path = text.length > 1 && text.endsWith("/") ? text.slice(0, -1) : text;
  if (path !== "/" && path.slice(1).split("/").some((c) => c === "" || c === "." || c === "..")) {
    throw bad("it has an empty, . or .. component");
  }
  return path;
}

/** Whether the cgroup `path` is `container` or below it. */
export function inCgroup(path: string | undefined, container: string): boolean {
  if (path === undefined) return false;
  return container === "/" || path === container || path.startsWith(container + "/");
}

/** The container filters of a process list. */
export interface ContainerFilter {
  /** Processes in this cgroup or below it. */
  cgroup?: string;
  /** Processes in this pid namespace. */
  pidNs?: number;
}

/** Whether `process` passes every filter of `filter`. */
export function inContainer(process: Process, filter: ContainerFilter): boolean {
  return (filter.cgroup === undefined || inCgroup(process.cgroup, filter.cgroup)) &&
    (filter.pidNs === undefined || process.pidNs === filter.pidNs);
}
