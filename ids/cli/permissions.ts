/**
 * The permissions the IDS runs with, under `deno run` and in the compiled `ebpfmon-ids` alike:
 * files for its state, configuration and token, the network for agents and its API, the
 * environment for its defaults, and system information used by its metrics library.
 *
 * @module
 */

export const IDS_PERMISSIONS: readonly string[] = [
  "--allow-read",
  "--allow-write",
  "--allow-net",
  "--allow-env",
  "--allow-sys",
  // A small young generation: with V8's default the service's RSS grew by 68-109 MB over 100
  // agent restarts, its live heap flat at 23 MB; with 2 MB semi-spaces by 20-25 MB, with 4 MB by
  // 10 MB (`deno task soak`). A check of 100 processes leaves 2.7 MB of short-lived objects: it
  // took 13.9 ms with 2 MB semi-spaces, 12.4 ms with 4 MB and 12.5 ms with 8 MB (side by side).
  "--v8-flags=--max-semi-space-size=4",
];
