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
];
