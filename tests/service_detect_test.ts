/**
 * Detection through the service, as `serve` runs it: alerts opened by the refresh loop, served
 * by the API, streamed over SSE, kept in the store; nothing medium or worse on a clean system
 * under a fork/exit storm over 50 consecutive snapshots; a BPF program and a listener the test
 * opens raise their alerts, which resolve once they are gone.
 */

import {
  assert,
  assertEquals,
  eventually,
  forkStorm,
  freePort,
  privilegedTest,
} from "./support/mod.ts";
import { loadTestProgram, unloadTestProgram } from "./bpf_fixture.ts";
import { spawnAgent } from "../agent/mod.ts";
import { serveConfig } from "./serve.ts";
import { openSession } from "../ids/client/mod.ts";
import { runCheck } from "../ids/detect/mod.ts";

interface Alert {
  id: number;
  rule: string;
  subject: string;
  state: string;
  severity: string;
  evidence: Record<string, unknown>;
  count: number;
}

privilegedTest(
  "serve: no alert under a fork/exit storm; a BPF program and a listener raise alerts that resolve",
  async () => {
    const state = await Deno.makeTempDir({ prefix: "ebpfmon-svc-detect-" });
    const agentAddress = `127.0.0.1:${freePort()}`;
    await using _agent = await spawnAgent({ stateDir: state, listen: agentAddress });
    // This machine loads BPF programs of its own at boot (not ebpfmon's; bpftool does not list
    // them): allow-listed by tag, as an operator would.
    const bootTags = await (async () => {
      using session = await openSession({ agent: agentAddress, state });
      const bpf = (await runCheck(session, "prefetch")).scan.sections.bpf;
      return bpf?.supported ? bpf.value.programs.filter((p) => !p.own).map((p) => p.tag) : [];
    })();
    await using serve = await serveConfig(state, {
      listen: "127.0.0.1:0",
      stateDir: state,
      rules: { bpf_program: { allow: bootTags } },
      alerts: { resolveAfter: 2 },
      guests: [{ name: "vm1", agent: agentAddress, refreshMs: 100 }],
    });
    const { url, token } = serve;
    const get = async (path: string) => {
      const res = await serve.request(path);
      return { status: res.status, body: await res.json() };
    };
    const fetches = async () => (await get("/v1/vms/vm1/stats")).body.fetches as number;
    const alerts = async (query = "") =>
      (await get(`/v1/alerts?vm=vm1${query}`)).body.alerts as Alert[];

    await eventually("the first scan", async () => (await fetches()) > 0 || undefined);
    const storm = forkStorm();
    try {
      const start = await fetches();
      await eventually(
        "50 snapshots during the storm",
        async () => (await fetches()) >= start + 50 || undefined,
        120_000,
      );
    } finally {
      storm.kill("SIGKILL");
      await storm.status;
    }
    assertEquals(await alerts("&severity=medium"), [], "no alert medium or worse");
    const metrics = await (await fetch(`${url}/metrics`)).text();
    assert(!/ebpfmon_alerts_open\{[^}]*\} [1-9]/.test(metrics), "no open alert in the metrics");

    // A BPF program loaded by the test, not by the agent.
    const dir = await Deno.makeTempDir({ prefix: "ebpfmon-svc-bpf-" });
    const pin = `/sys/fs/bpf/ebpfmon-svc-${Deno.pid}`;
    const truth = await loadTestProgram(dir, pin);
    let opened: Alert;
    try {
      opened = await eventually(
        "the bpf_program alert",
        async () =>
          (await alerts("&rule=bpf_program&state=open")).find((a) => a.evidence.id === truth.id),
      );
      assertEquals([opened.subject, opened.evidence.tag], [
        `bpf prog ${truth.id} ${truth.name}`,
        truth.tag,
      ]);
      const gauge = await (await fetch(`${url}/metrics`)).text();
      assert(
        gauge.includes('ebpfmon_alerts_open{vm="vm1",rule="bpf_program",severity="medium"} 1'),
        gauge,
      );
    } finally {
      await unloadTestProgram(pin, truth.id).catch(() => {});
      await Deno.remove(dir, { recursive: true });
    }
    const resolved = await eventually(
      "the bpf_program alert resolved",
      async () =>
        (await alerts("&rule=bpf_program&state=resolved")).find((a) => a.id === opened.id),
    );
    assert(resolved.count >= 1);

    // A listener opened after the first scan.
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (listener.addr as Deno.NetAddr).port;
    let listen: Alert;
    try {
      listen = await eventually(
        "the new_listener alert",
        async () =>
          (await alerts("&rule=new_listener&state=open")).find((a) =>
            a.subject === `tcp 127.0.0.1:${port}`
          ),
      );
      const owners = listen.evidence.owners as { pid: number }[];
      assert(owners.some((o) => o.pid === Deno.pid), JSON.stringify(owners));
      // The same alert is kept while the listener stays: updated, not opened again.
      await eventually("the alert seen again", async () => {
        const now = (await alerts("&rule=new_listener&state=open")).find((a) => a.id === listen.id);
        return now && now.count > 2 ? now : undefined;
      });
      assertEquals(
        (await alerts("&rule=new_listener")).filter((a) => a.subject === listen.subject).length,
        1,
      );
    } finally {
      listener.close();
    }
    await eventually(
      "the new_listener alert resolved",
      async () =>
        (await alerts("&rule=new_listener&state=resolved")).find((a) => a.id === listen.id),
    );

    // Every change was streamed: resume the SSE stream from the start and see them all.
    const res = await fetch(`${url}/v1/alerts/stream`, {
      headers: { Authorization: `Bearer ${token}`, "Last-Event-ID": "0" },
    });
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (!(text.includes(`"resolved"`) && text.split("event: alert").length > 4)) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    await reader.cancel();
    assert(text.includes(`tcp 127.0.0.1:${port}`) && text.includes(truth.tag), text);
  },
);
