/**
 * The Prometheus metrics of the monitor service's guests, in one registry.
 *
 * @module
 */

import client from "prom-client";

/** The metrics every guest reports, in one registry. */
export class Metrics {
  readonly registry = new client.Registry();
  readonly fetchSeconds = new client.Histogram({
    name: "ebpfmon_fetch_seconds",
    help: "Time to take one snapshot of a view of a guest",
    labelNames: ["vm", "view", "mode"] as const,
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });
  readonly bytes = new client.Counter({
    name: "ebpfmon_received_bytes_total",
    help: "Frame bytes received from a guest's agent",
    labelNames: ["vm"] as const,
    registers: [this.registry],
  });
  readonly roundTrips = new client.Counter({
    name: "ebpfmon_round_trips_total",
    help: "Requests sent to a guest's agent",
    labelNames: ["vm"] as const,
    registers: [this.registry],
  });
  readonly failures = new client.Counter({
    name: "ebpfmon_fetch_failures_total",
    help: "Snapshots of a view of a guest that failed",
    labelNames: ["vm", "view"] as const,
    registers: [this.registry],
  });
  readonly up = new client.Gauge({
    name: "ebpfmon_agent_up",
    help: "1 when the guest's agent is connected",
    labelNames: ["vm"] as const,
    registers: [this.registry],
  });
}
