/**
 * What the IDS's side of TLS costs (`deno task bench:tls`): the agent's real channel server
 * (`listenChannel`, node:tls, client certificates required) streams the same bytes to three
 * clients in turn, each with the IDS's credentials:
 *
 * - `channel`: the IDS's own `connectChannel` (node:tls over the gated transport: the agent's
 *   certificate pinned by fingerprint, the reader's pace bounding what is buffered);
 * - `node:tls socket`: node:tls on its own TCP socket (no gate);
 * - `Deno.connectTls`: Deno's native TLS (rustls), client certificate given, the agent's
 *   certificate checked against the pairing CA only: Deno's API shows no peer certificate, so
 *   it cannot pin one.
 *
 * The server runs in a Worker (`tls_server_worker.ts`: a thread of its own, as the agent is a
 * process of its own); the
 * CPU time is the whole process's, both sides. Rounds take the clients in turn; each point is the
 * median over the rounds. It prints a Markdown table and writes nothing.
 *
 * Usage: `deno task bench:tls [--mib 64] [--reps 5]`
 *
 * @module
 */

import process from "node:process";
import tls from "node:tls";
import { parseArgs } from "node:util";
import { connectChannel, ensureIdsCredentials } from "../protocol/mod.ts";
import { loadavg, machine } from "./machine.ts";
import { quantile } from "./results.ts";

const MIB = 1 << 20;

type Client = (port: number, bytes: number) => Promise<void>;

/** Reads until `bytes` have come (the channel's acceptance bytes included, a few). */
async function drainReader(read: (buf: Uint8Array) => Promise<number | null>, bytes: number) {
  const buf = new Uint8Array(256 << 10);
  for (let got = 0; got < bytes;) {
    const n = await read(buf);
    if (n === null) throw new Error(`the stream ended after ${got} of ${bytes} bytes`);
    got += n;
  }
}

function clients(state: string): Promise<Record<string, Client>> {
  return ensureIdsCredentials(state).then((ids) => ({
    channel: async (port, bytes) => {
      const channel = await connectChannel({ hostname: "127.0.0.1", port, credentials: ids });
      let got = 0;
      for await (const chunk of channel.chunks()) {
        got += chunk.length;
        if (got >= bytes) break;
      }
      channel.close();
    },
    "node:tls socket": (port, bytes) =>
      new Promise<void>((resolve, reject) => {
        const socket = tls.connect({
          host: "127.0.0.1",
          port,
          key: ids.key,
          cert: ids.cert,
          ca: ids.ca,
          checkServerIdentity: () => undefined,
        });
        let got = 0;
        socket.on("data", (data: Uint8Array) => {
          got += data.length;
          if (got >= bytes) {
            socket.destroy();
            resolve();
          }
        });
        socket.on("error", reject);
      }),
    "Deno.connectTls": async (port, bytes) => {
      const conn = await Deno.connectTls({
        hostname: "127.0.0.1",
        port,
        caCerts: [ids.ca],
        cert: ids.cert,
        key: ids.key,
      });
      await drainReader((buf) => conn.read(buf), bytes);
      conn.close();
    },
  }));
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { mib: { type: "string", default: "64" }, reps: { type: "string", default: "5" } },
  });
  const mib = Number(values.mib);
  const reps = Number(values.reps);
  if (!Number.isInteger(mib) || mib < 1 || !Number.isInteger(reps) || reps < 1) {
    throw new RangeError("Invalid --mib or --reps: expected whole numbers of at least 1");
  }
  const state = await Deno.makeTempDir({ prefix: "ebpfmon-tls-" });
  const bytes = mib * MIB;
  const load = loadavg();
  const worker = new Worker(new URL("./tls_server_worker.ts", import.meta.url), { type: "module" });
  const ready = new Promise<number>((resolve) => {
    worker.onmessage = (e: MessageEvent<{ port: number }>) => resolve(e.data.port);
  });
  worker.postMessage({ state, bytes });
  const port = await ready;
  const all = await clients(state);
  const runs = new Map<string, { mbps: number; cpuMsPerMiB: number }[]>();
  for (let round = 0; round <= reps; round++) {
    for (const [name, client] of Object.entries(all)) {
      const cpu = process.cpuUsage();
      const started = performance.now();
      await client(port, bytes);
      const ms = performance.now() - started;
      const used = process.cpuUsage(cpu);
      // Round 0 warms up.
      if (round === 0) continue;
      const list = runs.get(name) ?? [];
      list.push({ mbps: bytes / 1e3 / ms, cpuMsPerMiB: (used.user + used.system) / 1e3 / mib });
      runs.set(name, list);
    }
  }
  worker.terminate();
  await Deno.remove(state, { recursive: true });
  const m = machine();
  console.log(
    `Machine: ${m.description}, Deno ${m.deno}. ${mib} MiB per run, ${reps} rounds of the ` +
      `clients in turn after one warm-up round, medians; load ${load.join(" ")} before.\n`,
  );
  console.log("| IDS client | MB/s | CPU ms/MiB, both sides | MB/s / channel's |");
  console.log("| --- | ---: | ---: | ---: |");
  const base = quantile(runs.get("channel")!.map((r) => r.mbps), 0.5);
  for (const [name, list] of runs) {
    const mbps = quantile(list.map((r) => r.mbps), 0.5);
    const cpu = quantile(list.map((r) => r.cpuMsPerMiB), 0.5);
    console.log(
      `| ${name} | ${mbps.toFixed(0)} | ${cpu.toFixed(2)} | ${(mbps / base).toFixed(2)}x |`,
    );
  }
  Deno.exit(0);
}
