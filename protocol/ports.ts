/**
 * A free TCP port of the loopback address, for a listener that must be told its port before it
 * starts (QEMU's forwarding, an agent a test spawns).
 *
 * @module
 */

/** A TCP port of 127.0.0.1 that was free a moment ago (another process may take it since). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}
