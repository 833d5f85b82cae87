import { assert, assertEquals } from "../tests/support/mod.ts";
import { renderChart } from "./chart.ts";
import { renderMarkdown } from "./report.ts";
import {
  BenchResults,
  compare,
  evaluateTargets,
  type LinkResult,
  type PointResult,
  quantile,
  summarise,
} from "./results.ts";
import type { Sample } from "./ids_worker.ts";

const LINK: LinkResult = {
  name: "0.2 ms",
  targetRttMs: 0.2,
  holdUs: 70,
  rttMs: { median: 0.2, p90: 0.25 },
  rttErrorPct: 0,
  bandwidthMBps: 1000,
};

function sample(ms: number, batched: boolean): Sample {
  return {
    ms,
    roundTrips: batched ? 1 : 150,
    bytes: batched ? 100_000 : 500_000,
    guestMs: batched ? 0.5 : null,
    agentMs: batched ? 1 : null,
    idsCpuMs: ms / 2,
    idsBaseKb: 90_000,
    idsPeakKb: 100_000,
    agentPeakKb: 200_000,
    items: 100,
    truncated: false,
    misses: 0,
  };
}

function points(): PointResult[] {
  const at = { processes: 100, link: LINK };
  const ps = [
    summarise({
      view: "processes",
      mode: "prefetch",
      warmupMs: 3,
      samples: [2, 1, 3].map((ms) => sample(ms, true)),
    }, at),
    summarise({
      view: "processes",
      mode: "on-demand",
      warmupMs: 60,
      samples: [40, 60, 50].map((ms) => sample(ms, false)),
    }, at),
  ];
  compare(ps, LINK);
  return ps;
}

Deno.test("quantile() takes the nearest rank", () => {
  assertEquals(quantile([5, 1, 3, 2, 4], 0.5), 3);
  assertEquals(quantile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.9), 9);
  assert(Number.isNaN(quantile([], 0.5)));
});

Deno.test("compare() sets the speedup over on-demand and the limit of prefetch modes", () => {
  const [prefetch, onDemand] = points();
  assertEquals(prefetch.medianMs, 2);
  assertEquals(prefetch.speedup, 25);
  assertEquals(onDemand.speedup, 1);
  // one RTT + walk + 100,000 bytes at 10^9 bytes/s
  assertEquals(prefetch.limitMs, 0.2 + 0.5 + 0.1);
  assertEquals(prefetch.limitRatio, 2 / 0.8);
  assertEquals(onDemand.limitMs, null);
});

Deno.test("evaluateTargets() judges what was measured and leaves the rest unjudged", () => {
  const targets = evaluateTargets(points(), [LINK]);
  // Only the 0.2 ms point at 100 processes was measured: its speedup and limit ratio.
  assertEquals(targets.map((t) => t.met), [
    null,
    null,
    true,
    null,
    null,
    null,
    false,
    null,
    null,
    null,
    null,
    null,
  ]);
});

Deno.test("evaluateTargets() sets a delta beside the whole snapshot and ps beside the list", () => {
  const at = { processes: 10_000, link: { ...LINK, name: "loopback", targetRttMs: 0 } };
  const whole = summarise({
    view: "processes",
    mode: "prefetch",
    warmupMs: 40,
    samples: [40, 50, 45].map((ms) => sample(ms, true)),
  }, at);
  const delta = summarise({
    view: "processes:delta",
    mode: "prefetch",
    warmupMs: 10,
    samples: [10].map((ms) => ({ ...sample(ms, true), bytes: 4_000 })),
  }, at);
  const targets = evaluateTargets([whole, delta], [at.link], {
    baselines: [{ processes: 10_000, psMs: 450 }],
    agentIdleMB: 50,
  });
  const byName = (text: string) => targets.find((t) => t.name.includes(text))!;
  // 4,000 of 100,000 bytes
  assertEquals([byName("second snapshot").value, byName("second snapshot").met], [4, true]);
  // ps 450 ms against the list's 45 ms
  assertEquals([byName("than ps").value, byName("than ps").met], [10, true]);
  assertEquals([byName("at most 50 ms").value, byName("at most 50 ms").met], [45, true]);
  assertEquals(byName("agent RSS idle").met, true);
  assertEquals(byName("agent peak").value, 200_000 * 1024 / 1e6);
});

Deno.test("evaluateTargets() sets a full check beside the process list at the same point", () => {
  const check = summarise({
    view: "check",
    mode: "prefetch",
    warmupMs: 9,
    samples: [5, 7, 6].map((ms) => sample(ms, true)),
  }, { processes: 100, link: LINK });
  const [ratio, trips] = evaluateTargets([...points(), check], [LINK]);
  // 6 ms against the process list's 2 ms
  assertEquals([ratio.value, ratio.met], [3, true]);
  assertEquals([trips.value, trips.met], [1, true]);
});

Deno.test("the chart and the report render every point", () => {
  const results: BenchResults = BenchResults.parse({
    version: 1,
    quick: true,
    startedAt: new Date(0).toISOString(),
    wallS: 1,
    machine: { description: "test", cpu: "cpu", cores: 2, memoryGiB: 1, kernel: "6", deno: "2" },
    settings: {
      counts: [100],
      rttsMs: [0.2],
      views: ["processes"],
      modes: ["prefetch", "on-demand"],
      reps: 3,
      minReps: 3,
      budgetS: 1,
      warmupS: 1,
    },
    links: [LINK],
    points: points(),
    targets: evaluateTargets(points(), [LINK]),
    notes: [],
  });
  const svg = renderChart(results);
  // two modes and the limit at one count, and their legend
  assertEquals(svg.match(/<circle /g)?.length, 6);
  assert(svg.includes("prefetch, 0.2 ms") && svg.includes("limit estimate, 0.2 ms"));
  const markdown = renderMarkdown(results, "chart.svg");
  assertEquals(markdown.match(/^\| processes \|/gm)?.length, 2);
  assert(markdown.includes("![median time against process count](chart.svg)"));
});
