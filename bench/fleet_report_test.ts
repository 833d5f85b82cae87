import { assertEquals, assertThrows } from "../tests/support/mod.ts";
import {
  agentOf,
  type FleetArgs,
  fleetSettings,
  type PhaseMeasure,
  renderFleetTable,
  summarisePhase,
} from "./fleet_report.ts";

const ARGS: FleetArgs = {
  guests: "100",
  agents: "20",
  processes: "500",
  "refresh-ms": "1000",
  duration: "60",
  warmup: "5",
  phases: "delta,full",
  rounds: "1",
  "ring-mb": "8",
  out: "/tmp/out",
};

Deno.test("fleetSettings() reads the defaults", () => {
  assertEquals(fleetSettings(ARGS), {
    guests: 100,
    agents: 20,
    processes: 500,
    refreshMs: 1000,
    durationS: 60,
    warmupS: 5,
    phases: ["delta", "full"],
    rounds: 1,
    ringMb: 8,
    out: "/tmp/out",
  });
});

Deno.test("fleetSettings() names the bad argument", () => {
  const cases: [Partial<FleetArgs>, string][] = [
    [{ guests: "0" }, 'Invalid --guests "0": expected an integer 1..1000'],
    [{ guests: "1.5" }, 'Invalid --guests "1.5": expected an integer 1..1000'],
    [{ "refresh-ms": "50" }, 'Invalid --refresh-ms "50": expected an integer 100..86400000'],
    [{ agents: "8", guests: "4" }, 'Invalid --agents "8": more agents than the 4 guests'],
    [{ "ring-mb": "12" }, 'Invalid --ring-mb "12": expected a power of two'],
    [{ phases: "delta,half" }, 'Invalid --phases "delta,half": "half" is not one of delta, full'],
  ];
  for (const [change, message] of cases) {
    const error = assertThrows(() => fleetSettings({ ...ARGS, ...change }), TypeError);
    assertEquals(error.message, message);
  }
});

Deno.test("agentOf() spreads guests round robin, no agent two more than another", () => {
  const counts = [0, 0, 0, 0];
  for (let i = 0; i < 10; i++) counts[agentOf(i, 4)]++;
  assertEquals(counts, [3, 3, 2, 2]);
});

/** A guest refreshed at `starts` (ms from 0), each lasting `ms`, due 1000 ms after the last. */
function guest(starts: number[], ms: number) {
  return starts.map((at, i) => ({
    at,
    ms,
    ok: true,
    bytes: 2048,
    roundTrips: 1,
    ...(i === 0 ? {} : { lateMs: at - (starts[i - 1] + ms + 1000) }),
  }));
}

function measure(records: PhaseMeasure["records"]): PhaseMeasure {
  return {
    phase: "delta",
    round: 1,
    guests: records.length,
    refreshMs: 1000,
    from: 1000,
    to: 5000,
    cpuS: 2,
    agentCpuS: 0.4,
    machineCpuS: 7.2,
    rss: [100 * 2 ** 20, 300 * 2 ** 20, 200 * 2 ** 20],
    hwm: 350 * 2 ** 20,
    upS: 3,
    up: { start: records.length, end: records.length },
    records,
    logLines: 0,
    processes: { start: 500, end: 500 },
  };
}

Deno.test("summarisePhase() counts the window's refreshes and reads lateness three ways", () => {
  const s = summarisePhase(measure([
    // 100 ms refreshes, started 5 ms late: 1105 ms apart.
    guest([0, 1105, 2210, 3315, 4420, 5525], 100),
    // Its refresh of 1600 took 2500 ms: the next was due at 5100.
    [
      { at: 500, ms: 100, ok: true, bytes: 2048, roundTrips: 1 },
      { at: 1600, ms: 2500, ok: true, bytes: 2048, roundTrips: 1, lateMs: 0 },
      { at: 5100, ms: 100, ok: true, bytes: 2048, roundTrips: 1, lateMs: 0 },
    ],
  ]));
  // guest 1: 1105, 2210, 3315, 4420; guest 2: 1600 (5100 is past the window).
  assertEquals([s.done, s.expected, s.failed], [5, 8, 0]);
  assertEquals(s.cpu, 0.5);
  assertEquals([s.agentCpu, s.machineCpu], [0.1, 1.8]);
  assertEquals([s.rssMaxMB, s.rssMedianMB, s.hwmMB], [300, 200, 350]);
  assertEquals(s.lateMs.max, 5);
  assertEquals(s.cadenceMs, { p50: 105, p99: 105, max: 105 });
  assertEquals(s.overInterval, 0);
  assertEquals(s.durationMs, { p50: 100, p99: 2500, max: 2500 });
  assertEquals(s.medianKB, 2);
});

Deno.test("summarisePhase() counts a refresh more than one interval after its schedule", () => {
  const records = guest([0, 1100, 3200, 4300], 100);
  records[3] = { ...records[3], ok: false, bytes: 0 };
  const s = summarisePhase(measure([records]));
  assertEquals([s.done, s.failed, s.medianKB], [3, 1, 2]);
  // 3200 came 2100 ms after 1100: 1100 ms after its 1 Hz schedule.
  assertEquals(s.cadenceMs.max, 1100);
  assertEquals(s.overInterval, 1);
  assertEquals(s.lateMs.max, 1000);
});

Deno.test("renderFleetTable() has a row per phase run, '-' where nothing was measured", () => {
  const table = renderFleetTable([summarisePhase(measure([[]]))]).split("\n");
  assertEquals(table.length, 3);
  assertEquals(
    table[2],
    "| delta | 1 | 1 / 1 | 500 | 50% | 10% | 1.80 | 300 | 350 | 0 / 4 | 0 | - / - / - | - / - / - | 0 | - / - | - |",
  );
});
