/**
 * The Debian test guest live-migrated to a second QEMU on this machine while the IDS service
 * monitors it: the migration completes with the guest's memory intact (its dirtying workload
 * checks every word), the service keeps the guest (a `migrated` event with the monitoring gap,
 * no reboot, restart or new-kernel event), and a snapshot after the switch lists the guest's
 * known processes. Once per guest kernel (6.1 and 6.12).
 */

import { assert, assertEquals, eventually, privilegedTest } from "./support/mod.ts";
import {
  buildGuest,
  DirtyWorkload,
  GUEST_KERNELS,
  GuestVm,
  migrateMonitored,
  serveGuest,
} from "../guest/mod.ts";

for (const kernel of Object.values(GUEST_KERNELS)) {
  privilegedTest(
    `the monitored guest (${kernel.key}) migrates live and the service keeps it`,
    async () => {
      const image = await buildGuest({ kernel: kernel.key });
      const state = await Deno.makeTempDir({ prefix: "ebpfmon-migrate-" });
      await using vm = await GuestVm.boot(image, { stateDir: state });
      await using service = await serveGuest(vm, state);
      const before = await eventually("a first snapshot", async () => {
        const status = await service.get("/v1/vms/debian");
        return status.lastSnapshotAt ? status : undefined;
      }, 60_000);
      const workload = await DirtyWorkload.start(vm, 16);

      const moved = await migrateMonitored(vm, service, { throttle: "auto", bandwidthMiBps: 512 });
      assert(moved.migration.completed, `the migration ended ${moved.migration.status}`);
      assert(moved.migration.transferredBytes > 0, JSON.stringify(moved.migration));
      assert(typeof moved.gapMs === "number" && moved.gapMs > 0, `the gap: ${moved.gapMs}`);
      assert(moved.identityKept, "no reboot, restart or new-kernel event");

      const running = await workload.status();
      const final = await workload.stop();
      assert(running && final.passes > running.passes, "the workload ran on after the switch");
      assertEquals([final.errors, final.firstError], [0, "-"], "the guest's memory is intact");

      const after = await service.get("/v1/vms/debian");
      assertEquals(after.state, "up");
      assertEquals(
        (after.kernel as { bootId: string }).bootId,
        (before.kernel as { bootId: string }).bootId,
      );
      const listed = await eventually("a snapshot after the switch", async () => {
        const body = await service.get("/v1/vms/debian/processes");
        const snapshot = body.snapshot as { takenAt: number } | undefined;
        return snapshot && snapshot.takenAt > (after.lastSnapshotAt as number) ? body : undefined;
      });
      const pids = new Set((listed.processes as { pid: number }[]).map((p) => p.pid));
      for (const known of vm.knownProcesses) assert(pids.has(known.pid), `${known.name} is listed`);
      assert(pids.has(vm.agentPid), "the agent is listed");
    },
  );
}
