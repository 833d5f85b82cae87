/**
 * The benchmark's smoke test: `bench/run.ts --quick` as a user runs it. It checks the shape of
 * what the benchmark writes and that the baseline made more round trips than the batched
 * prefetch; it asserts no timing.
 */

import { assert, assertEquals, privilegedTest } from "./support/mod.ts";
import { BenchResults } from "../bench/mod.ts";

const root = new URL("..", import.meta.url);

privilegedTest(
  "bench --quick writes complete results in which on-demand makes more round trips than prefetch",
  async () => {
    const out = await Deno.makeTempDir({ prefix: "ebpfmon-bench-test-" });
    try {
      const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "bench/run.ts", "--quick", "--out", out],
        cwd: root,
        stdin: "null",
      }).output();
      const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
      assertEquals(code, 0, text(stderr));
      assert(text(stdout).includes("| processes |"), "no Markdown table on stdout");

      const results = BenchResults.parse(JSON.parse(await Deno.readTextFile(`${out}/quick.json`)));
      assert(results.quick);
      assertEquals(results.links.map((l) => l.targetRttMs), [0, 0.2]);
      assertEquals(
        results.points.length,
        results.links.length * results.settings.views.length * results.settings.modes.length,
      );
      for (const p of results.points) {
        const where = `${p.view}, ${p.link}, ${p.mode}`;
        assertEquals(p.error, null, where);
        assert(p.reps >= 1 && p.samplesMs.length === p.reps, where);
        for (
          const field of [
            "items",
            "medianMs",
            "p90Ms",
            "roundTrips",
            "bytes",
            "idsCpuMs",
            "idsPeakMB",
            "agentPeakMB",
            "speedup",
          ] as const
        ) {
          assert(p[field] !== null, `${where}: ${field} is null`);
        }
        const batched = p.mode !== "on-demand";
        for (const field of ["guestMs", "agentMs", "limitMs", "limitRatio"] as const) {
          assertEquals(p[field] !== null, batched, `${where}: ${field}`);
        }
      }
      for (const link of results.links) {
        for (const view of results.settings.views) {
          const at = (mode: string) =>
            results.points.find((p) => p.link === link.name && p.view === view && p.mode === mode)!;
          assert(
            at("on-demand").roundTrips! > at("prefetch").roundTrips!,
            `${view}, ${link.name}: on-demand made ${at("on-demand").roundTrips} round trips, ` +
              `prefetch ${at("prefetch").roundTrips}`,
          );
        }
      }
      const svg = await Deno.readTextFile(`${out}/quick.svg`);
      assert(svg.startsWith("<svg") && svg.trimEnd().endsWith("</svg>"), "not an SVG document");
      assert((await Deno.readTextFile(`${out}/quick.md`)).includes("![median time"));
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
);
