/**
 * The encryption measurement: its options, its summary, and a run at 1 MiB over the real
 * channel as a user starts it. No timing is asserted, only what was sent and received.
 */

import { assert, assertEquals, assertThrows } from "../tests/support/mod.ts";
import { parseOptions } from "./encryption.ts";
import {
  type AnswerRun,
  EncryptionResults,
  type EncryptionRun,
  summarise,
  summariseAnswers,
} from "./encryption_results.ts";

const root = new URL("..", import.meta.url);
const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

Deno.test("parseOptions() has the issue's defaults and sorts the batch sizes", () => {
  const defaults = parseOptions([]);
  assertEquals([defaults.mib, defaults.answers, defaults.reps, defaults.verify], [
    64,
    2000,
    5,
    false,
  ]);
  assertEquals(defaults.batchesKiB, [4, 16, 64, 256, 1024]);
  const asked = parseOptions(["--mib", "2", "--batches", "64,4", "--reps", "1", "--verify"]);
  assertEquals([asked.mib, asked.reps, asked.verify], [2, 1, true]);
  assertEquals(asked.batchesKiB, [4, 64]);
});

Deno.test("parseOptions() refuses a bad value and names its option", () => {
  for (
    const [args, named] of [
      [["--mib", "0"], "--mib"],
      [["--mib", "1.5"], "--mib"],
      [["--mib", "5000"], "--mib"],
      [["--reps=-1"], "--reps"],
      [["--reps", "many"], "--reps"],
      [["--batches", "6"], "--batches"],
      [["--batches", "2048"], "--batches"],
      [["--batches", "4,,16"], "--batches"],
      [["--batches", "16,16"], "--batches"],
      [["--answers", "0"], "--answers"],
      // 1 MiB holds 256 pages
      [["--mib", "1", "--answers", "300"], "--answers"],
    ]
  ) {
    assertThrows(() => parseOptions(args as string[]), RangeError, named as string);
  }
  assertThrows(() => parseOptions(["--fast"]), TypeError, "--fast");
});

function run(batchKiB: number, senderCpuMs: number, wallMs: number): EncryptionRun {
  const writes = 1024 / batchKiB;
  return {
    batchKiB,
    bytesSent: writes * 9 + 256 * 4108,
    bytesReceived: writes * 9 + 256 * 4108,
    pages: 256,
    writes,
    pagesPerWrite: batchKiB / 4,
    wallMs,
    senderCpuMs,
    receiverCpuMs: 1,
    wireBytes: writes * 9 + 256 * 4108 + writes * 22,
    sentChecksum: 1,
    checksum: null,
  };
}

function answerRun(writesPerAnswer: number, senderCpuMs: number): AnswerRun {
  const { batchKiB: _, pagesPerWrite: __, ...fields } = run(4, senderCpuMs, 100);
  return { writesPerAnswer, ...fields };
}

Deno.test("summarise() takes medians and sets each batch size against the smallest", () => {
  const runs = [run(4, 8, 10), run(64, 2, 4), run(4, 6, 12), run(64, 3, 5), run(4, 7, 11)];
  const [pages, batched] = summarise({ mib: 1, batchesKiB: [4, 64] }, runs);
  assertEquals([pages.reps, pages.senderCpuMsPerMiB, pages.cpuRatio], [3, 7, 1]);
  // The nearest-rank median of two runs is the lower one.
  assertEquals([batched.reps, batched.senderCpuMsPerMiB, batched.cpuRatio], [2, 2, 3.5]);
  // Throughput is the median of each run's: 11 ms against the lower of 4 and 5 ms.
  assert(Math.abs(batched.throughputRatio - 11 / 5) < 1e-9, `${batched.throughputRatio}`);
  assertEquals([pages.tlsBytesPerWrite, batched.pagesPerWrite], [22, 16]);
});

Deno.test("summariseAnswers() puts two writes per READ first and takes medians per READ", () => {
  const runs = [answerRun(1, 3), answerRun(2, 6), answerRun(1, 2), answerRun(2, 4)];
  const [two, one] = summariseAnswers(1000, runs);
  assertEquals([two.writesPerAnswer, two.senderCpuUsPerAnswer, two.cpuRatio], [2, 4, 1]);
  assertEquals([one.writesPerAnswer, one.senderCpuUsPerAnswer, one.cpuRatio], [1, 2, 2]);
  assertEquals(one.roundTripUs, 100);
});

Deno.test("bench:encryption at 1 MiB sends every page over the channel and the receiver gets it", async () => {
  const out = await Deno.makeTempDir({ prefix: "ebpfmon-encryption-test-" });
  try {
    const args = ["--mib", "1", "--reps", "1", "--batches", "4,64", "--answers", "50"];
    args.push("--verify", "--out", out);
    const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "bench/encryption.ts", ...args],
      cwd: root,
      stdin: "null",
    }).output();
    assertEquals(code, 0, text(stderr));
    assert(text(stdout).includes("| 64 KiB"), "no Markdown table on stdout");

    const files = [...Deno.readDirSync(out)].map((entry) => entry.name).sort();
    assertEquals(files.length, 2, files.join(", "));
    assert(/^encryption-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3}Z\.json$/.test(files[0]), files[0]);
    assertEquals(files[1], files[0].replace(/\.json$/, ".md"));
    const results = EncryptionResults.parse(
      JSON.parse(await Deno.readTextFile(`${out}/${files[0]}`)),
    );
    assertEquals(results.points.map((p) => [p.batchKiB, p.reps]), [[4, 1], [64, 1]]);
    assertEquals(results.runs.length, 2);
    for (const r of results.runs) {
      const where = `${r.batchKiB} KiB`;
      assertEquals(r.pages, 256, where);
      assertEquals(r.bytesReceived, r.bytesSent, where);
      // a DATA frame header per write, a record header per page
      assertEquals(r.bytesSent, r.writes * 9 + r.pages * (12 + 4096), where);
      assertEquals([r.writes, r.pagesPerWrite], r.batchKiB === 4 ? [256, 1] : [16, 16], where);
      assertEquals(r.checksum, r.sentChecksum, `${where}: the decrypted pages differ`);
      assert(r.senderCpuMs > 0 && r.wallMs > 0, where);
    }
    assertEquals(results.answerPoints.map((p) => [p.writesPerAnswer, p.reps]), [[2, 1], [1, 1]]);
    for (const r of results.answerRuns) {
      const where = `${r.writesPerAnswer} writes per READ`;
      assertEquals(r.pages, 50, where);
      assertEquals(r.bytesReceived, r.bytesSent, where);
      // per READ: a DATA frame of one record, and an END frame (62 bytes)
      assertEquals(r.bytesSent, 50 * (9 + 12 + 4096 + 62), where);
      assertEquals(r.writes, 50 * r.writesPerAnswer, where);
      assertEquals(r.checksum, r.sentChecksum, `${where}: the decrypted pages differ`);
    }
    assert(results.runs.every((r) => r.sentChecksum !== results.answerRuns[0].sentChecksum));
    const markdown = await Deno.readTextFile(`${out}/${files[1]}`);
    assert(markdown.includes("| 4 KiB") && markdown.includes("sender CPU ms/MiB"), markdown);
    assert(markdown.includes("| DATA and END in one write"), markdown);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("bench:encryption refuses a bad option with one line naming it", async () => {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "bench/encryption.ts", "--batches", "4,10"],
    cwd: root,
    stdin: "null",
  }).output();
  assertEquals(code, 2);
  assertEquals(text(stdout), "");
  assertEquals(
    text(stderr),
    'bench:encryption: Invalid --batches "10": a batch is whole pages (a multiple of 4)\n',
  );
});
