/**
 * Delta refreshes: the agent sends only the records that changed since the answer the IDS holds,
 * and the IDS rebuilds the whole answer from those and the carried runs.
 *
 * - Property: over random answers and random changes to them (bytes flipped, records dropped,
 *   added, moved, repeated), the agent's encoder (agent/delta.ts) and the IDS's decoder
 *   (ids/memory/delta.ts), through real DATA frames, rebuild every record of the new answer byte
 *   for byte, and carry exactly the records an earlier answer held unchanged; a changed byte is
 *   never missed.
 * - Real kernel: a process that renames itself and changes its uids between two snapshots is
 *   seen with its new comm and uids in a delta refresh, in both prefetch modes; every Nth
 *   prefetch of a session is asked whole.
 */

import fc from "fast-check";
import { assert, assertEquals, assertThrows, privilegedTest } from "./support/mod.ts";
import { DeltaEncoder, type RememberedAnswer, spawnAgent } from "../agent/mod.ts";
import { CARRIED_RUN, DataFrameBuilder, forEachRecord, FRAME_HEADER } from "../protocol/mod.ts";
import { type Mode, openSession } from "../ids/client/mod.ts";
import {
  AddressSpace,
  AnswerBuilder,
  type AnswerRecords,
  CarriedRunError,
  MemoryCache,
} from "../ids/memory/mod.ts";

const space = AddressSpace.FOUR_LEVEL;

interface Rec {
  /** Offset from the start of the kernel half. */
  at: number;
  bytes: Uint8Array;
}

const KERNEL_HIGH = 0xffff8000;

/** The records laid out as the walker's ring holds them: 16-byte header, bytes, 8-aligned. */
function ringOf(records: Rec[]): { ring: Uint8Array; offsets: number[] } {
  const offsets: number[] = [];
  let size = 0;
  for (const r of records) {
    offsets.push(size);
    size += (16 + r.bytes.length + 7) & ~7;
  }
  const ring = new Uint8Array(size);
  const view = new DataView(ring.buffer);
  records.forEach((r, i) => {
    view.setUint32(offsets[i], r.at % 2 ** 32, true);
    view.setUint32(offsets[i] + 4, KERNEL_HIGH + Math.floor(r.at / 2 ** 32), true);
    view.setUint32(offsets[i] + 8, r.bytes.length, true);
    ring.set(r.bytes, offsets[i] + 16);
  });
  return { ring, offsets };
}

/** The DATA frames the agent sends for `records` with `encoder`, in small frames. */
function encode(records: Rec[], encoder: DeltaEncoder): Uint8Array[] {
  const { ring, offsets } = ringOf(records);
  const builder = new DataFrameBuilder(8192, 1024);
  const frames: Uint8Array[] = [];
  records.forEach((r, i) => {
    while (!encoder.append(builder, ring, offsets[i], r.bytes.length)) frames.push(builder.take(1));
  });
  while (!encoder.flush(builder)) frames.push(builder.take(1));
  if (builder.records) frames.push(builder.take(1));
  return frames;
}

/** What the IDS rebuilds from `frames` against `base`, as the session does. */
function decode(frames: Uint8Array[], base: AnswerRecords | undefined, generation: number) {
  const answer = new AnswerBuilder();
  const cache = new MemoryCache();
  const batch = cache.batch();
  for (const frame of frames) {
    forEachRecord(frame.subarray(FRAME_HEADER), (high, low, payload, start, len) => {
      if (high === 0 && low === 0) {
        assertEquals(len, CARRIED_RUN);
        const view = new DataView(payload.buffer, payload.byteOffset + start, len);
        answer.carry(base!, view.getUint32(0, true), view.getUint32(4, true), cache, batch);
        return;
      }
      const at = space.kaddrOf(high, low)!;
      answer.add(at, payload, start, len);
      cache.insertFrom(at, payload, start, len, batch);
    });
  }
  return { records: answer.finish(generation), cache, carried: answer.carried };
}

/** The records of an answer the IDS holds, read back. */
function recordsOf(answer: AnswerRecords): Rec[] {
  return Array.from({ length: answer.count }, (_, i) => {
    const from = answer.buffers[answer.holders[i]];
    return {
      at: answer.addrs[i],
      bytes: from.slice(answer.offsets[i], answer.offsets[i] + answer.lens[i]),
    };
  });
}

const same = (a: Rec, b: Rec) =>
  a.at === b.at && a.bytes.length === b.bytes.length && a.bytes.every((x, i) => x === b.bytes[i]);

const record = fc.record({
  // Few distinct addresses, so that records share them (duplicates, moved records).
  at: fc.integer({ min: 0, max: 40 }).map((n) => n * 4096 + 2 ** 40),
  bytes: fc.uint8Array({ minLength: 1, maxLength: 300 }),
});

/** A change of an answer: bytes flipped, records dropped, added, moved. */
const change = fc.record({
  flips: fc.array(fc.tuple(fc.nat(), fc.nat(), fc.integer({ min: 1, max: 255 })), {
    maxLength: 6,
  }),
  drops: fc.array(fc.nat(), { maxLength: 4 }),
  adds: fc.array(fc.tuple(fc.nat(), record), { maxLength: 4 }),
  moves: fc.array(fc.tuple(fc.nat(), fc.nat()), { maxLength: 3 }),
});

function applied(records: Rec[], c: typeof change extends fc.Arbitrary<infer T> ? T : never) {
  const out = records.map((r) => ({ at: r.at, bytes: r.bytes.slice() }));
  for (const [i, k, x] of c.flips) {
    if (!out.length) break;
    const r = out[i % out.length];
    r.bytes[k % r.bytes.length] ^= x;
  }
  for (const i of c.drops) if (out.length) out.splice(i % out.length, 1);
  for (const [i, r] of c.adds) out.splice(i % (out.length + 1), 0, r);
  for (const [i, j] of c.moves) {
    if (!out.length) break;
    const [r] = out.splice(i % out.length, 1);
    out.splice(j % (out.length + 1), 0, r);
  }
  return out;
}

Deno.test("a delta answer rebuilds every record and carries exactly the unchanged ones", () => {
  fc.assert(
    fc.property(
      fc.array(record, { maxLength: 60 }),
      fc.array(change, { maxLength: 3 }),
      (first, changes) => {
        let agentBase: RememberedAnswer | undefined;
        let idsBase: AnswerRecords | undefined;
        let previous: Rec[] = [];
        let answer = first;
        for (let generation = 1; generation <= changes.length + 1; generation++) {
          const encoder = new DeltaEncoder(agentBase, generation);
          const got = decode(encode(answer, encoder), idsBase, generation);
          const rebuilt = recordsOf(got.records);
          assertEquals(rebuilt.length, answer.length);
          answer.forEach((r, i) => assert(same(rebuilt[i], r), `record ${i} is not what was sent`));
          const unchanged = answer.filter((r) => previous.some((p) => same(p, r))).length;
          assertEquals(encoder.carried, unchanged, "records carried");
          assertEquals(got.carried, unchanged);
          // The snapshot's cache holds every record's bytes at its address.
          for (const r of answer) {
            assert(
              got.cache.get(r.at, r.bytes.length) !== undefined,
              "a record is not in the cache",
            );
          }
          agentBase = encoder.answer();
          idsBase = got.records;
          previous = answer;
          if (generation <= changes.length) answer = applied(answer, changes[generation - 1]);
        }
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("a carried run outside the base is refused, naming the records", () => {
  const base = new AnswerBuilder();
  const bytes = new Uint8Array(64);
  base.add(0, bytes, 0, 32);
  base.add(4096, bytes, 32, 32);
  const held = base.finish(1);
  const cache = new MemoryCache();
  const error = assertThrows(
    () => new AnswerBuilder().carry(held, 1, 2, cache, cache.batch()),
    CarriedRunError,
  );
  assert(error.message.includes("1..2") && error.message.includes("2 records"), error.message);
  assertThrows(() => new AnswerBuilder().carry(held, 0, 0, cache, 0), CarriedRunError);
});

const CHANGER = new URL("./native/changer.c", import.meta.url).pathname;

/** A process that changes its comm and uids when told (tests/native/changer.c). */
async function startChanger(dir: string) {
  const path = `${dir}/ebpfmon-changer`;
  const built = await new Deno.Command("clang", {
    args: ["-O2", "-Wall", "-Werror", "-o", path, CHANGER],
    stderr: "piped",
  }).output();
  assert(built.success, `clang: ${new TextDecoder().decode(built.stderr)}`);
  const child = new Deno.Command(path, { stdin: "piped", stdout: "piped" }).spawn();
  const writer = child.stdin.getWriter();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  const line = async () => {
    while (!buffered.includes("\n")) {
      const { value, done } = await lines.read();
      if (done) throw new Error("the changer exited");
      buffered += value;
    }
    const [first, ...rest] = buffered.split("\n");
    buffered = rest.join("\n");
    return first;
  };
  assertEquals(await line(), "ready");
  return {
    pid: child.pid,
    async tell(command: string) {
      await writer.write(new TextEncoder().encode(command + "\n"));
      assertEquals(await line(), "done", command);
    },
    async [Symbol.asyncDispose]() {
      await writer.close();
      await child.status;
    },
  };
}

privilegedTest(
  "a delta refresh sees a process's new comm and uids, in both prefetch modes",
  async () => {
    const state = await Deno.makeTempDir({ prefix: "ebpfmon-delta-" });
    await using agent = await spawnAgent({ stateDir: state });
    using session = await openSession({ agent: agent.address, state });
    for (const mode of ["prefetch", "selective"] as Mode[]) {
      await using changer = await startChanger(state);
      const look = async () => {
        const { processes, stats } = await session.processes(mode);
        return { process: processes.find((p) => p.pid === changer.pid), stats };
      };
      const whole = await look();
      assertEquals(whole.process?.comm, "ebpfmon-changer");
      const quiet = await look();
      assert(quiet.stats.prefetch?.delta, `${mode}: the second prefetch is a delta`);
      assert(quiet.stats.prefetch!.carried > 0, `${mode}: nothing was carried`);
      assert(
        quiet.stats.bytes < whole.stats.bytes / 2,
        `${mode}: a delta of ${quiet.stats.bytes} bytes against ${whole.stats.bytes} whole`,
      );
      await changer.tell(`comm ebpfmon-${mode.slice(0, 3)}1`);
      const renamed = await look();
      assert(renamed.stats.prefetch?.delta, `${mode}: the prefetch after the rename is a delta`);
      assertEquals(renamed.process?.comm, `ebpfmon-${mode.slice(0, 3)}1`);
      assertEquals(renamed.process?.uid, 0);
      await changer.tell("uid 65534");
      const dropped = await look();
      assert(dropped.stats.prefetch?.delta, `${mode}: the prefetch after setresuid is a delta`);
      const p = dropped.process!;
      assertEquals([p.uid, p.euid, p.suid, p.fsuid], [65534, 65534, 65534, 65534]);
      assertEquals(p.comm, `ebpfmon-${mode.slice(0, 3)}1`);
    }
    session.fullEvery = 3;
    const asked: boolean[] = [];
    for (let i = 0; i < 6; i++) {
      asked.push(
        (await session.processes("prefetch")).stats.prefetch!.delta,
      );
    }
    // The base from before may count toward the first whole one; from there, every third is whole.
    const firstWhole = asked.indexOf(false);
    assert(firstWhole >= 0 && firstWhole < 3, `no whole prefetch among ${asked}`);
    assertEquals(asked.slice(firstWhole, firstWhole + 4), [false, true, true, false]);
  },
);
