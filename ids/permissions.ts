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
  // agent restarts, its live heap flat at 23 MB; with 2 MB semi-spaces, by 25 MB
  // (`deno task soak`).
  "--v8-flags=--max-semi-space-size=2",
];
