/**
 * What the service tests share: a free port to give an agent, and waiting for what a refresh
 * loop will make true.
 *
 * @module
 */

export { freePort } from "../../protocol/mod.ts";

/** Polls `fn` until it returns a value, for at most `ms`. */
export async function eventually<T>(
  what: string,
  fn: () => Promise<T | undefined>,
  ms = 20_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await fn();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
