/**
 * Sockets a test holds open so that the views have one of each kind to find, whatever else the
 * machine has: a TCP listener on each family, a connected TCP pair, and a bound UDP socket on
 * each family.
 *
 * @module
 */

import dgram from "node:dgram";

/** A bound UDP socket (node:dgram: Deno's own datagram API is unstable). */
async function bindUdp(type: "udp4" | "udp6", address: string): Promise<dgram.Socket> {
  const socket = dgram.createSocket(type);
  await new Promise<void>((resolve) => socket.bind(0, address, resolve));
  return socket;
}

/** The sockets, open until disposed. */
export class TestSockets implements Disposable {
  private constructor(
    readonly listener: Deno.TcpListener,
    readonly listener6: Deno.TcpListener,
    readonly client: Deno.TcpConn,
    readonly server: Deno.TcpConn,
    readonly udp: dgram.Socket,
    readonly udp6: dgram.Socket,
  ) {}

  /** Opens them all on loopback, each on a port of the kernel's choosing. */
  static async open(): Promise<TestSockets> {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const listener6 = Deno.listen({ hostname: "::1", port: 0 });
    const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
    const server = await listener.accept();
    const udp = await bindUdp("udp4", "127.0.0.1");
    const udp6 = await bindUdp("udp6", "::1");
    return new TestSockets(listener, listener6, client, server, udp, udp6);
  }

  /** The local port of each, listeners first. */
  get ports(): number[] {
    return [
      this.listener.addr.port,
      this.listener6.addr.port,
      this.udp.address().port,
      this.udp6.address().port,
      this.client.localAddr.port,
    ];
  }

  [Symbol.dispose](): void {
    this.client.close();
    this.server.close();
    this.listener.close();
    this.listener6.close();
    this.udp.close();
    this.udp6.close();
  }
}
