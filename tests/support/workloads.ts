/**
 * Workloads the tests run beside what they check, so that a rule or a view is tried on a busy,
 * churning system and not only on a quiet one.
 *
 * @module
 */

/** Starts about a thousand short processes a second until killed (SIGKILL, then its status). */
export function forkStorm(): Deno.ChildProcess {
  return new Deno.Command("/bin/sh", {
    args: ["-c", "while :; do for i in 1 2 3 4 5 6 7 8 9 10; do /bin/true & done; wait; done"],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
}
