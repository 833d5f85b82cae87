/**
 * The answers the agent reads from the guest kernel's files, not its memory: GET_BTF (the BTF,
 * read again for each request and sent in BTF frames) and SYMBOLS (from /proc/kallsyms). Each
 * writes its frames through `send`, which may wait for the peer to read.
 *
 * @module
 */

import {
  EMPTY_END_STATS,
  encodeFrame,
  ErrorCode,
  type Frame,
  FrameType,
  LIMITS,
} from "../protocol/mod.ts";
import { endFrame, errorFrame } from "./_closing_frames.ts";
import { lookupNames, lookupSymbols } from "./_kernel_facts.ts";

/**
 * Sends the BTF at `path` in BTF frames and an END, or an ERROR when the file is not the `size`
 * bytes it was when the agent started (the IDS knows the BTF by the hash HELLO gave).
 */
export async function sendBtf(
  send: (bytes: Uint8Array) => Promise<void>,
  id: number,
  path: string,
  size: number,
): Promise<void> {
  const started = performance.now();
  const btf = await Deno.readFile(path);
  if (btf.length !== size) {
    const message = `Cannot send the BTF: ${path} is ${btf.length} bytes now, ` +
      `${size} at start`;
    await send(errorFrame(id, ErrorCode.INTERNAL, message));
    return;
  }
  for (let offset = 0; offset < btf.length; offset += LIMITS.dataFrame) {
    const bytes = btf.subarray(offset, offset + LIMITS.dataFrame);
    await send(encodeFrame({ type: FrameType.BTF, id, offset, total: btf.length, bytes }));
  }
  await send(
    endFrame(id, {
      ...EMPTY_END_STATS,
      objects: 1,
      bytes: btf.length,
      agentNs: Math.round((performance.now() - started) * 1e6),
    }),
  );
}

/** Answers a SYMBOLS request: the names at its addresses, or the addresses of its names. */
export async function sendSymbols(
  send: (bytes: Uint8Array) => Promise<void>,
  frame: Extract<Frame, { type: typeof FrameType.SYMBOLS }>,
): Promise<void> {
  const asked = "addresses" in frame
    ? frame.addresses.length
    : "names" in frame
    ? frame.names.length
    : undefined;
  if (asked === undefined) {
    await send(
      errorFrame(
        frame.id,
        ErrorCode.BAD_FRAME,
        "Cannot serve SYMBOLS: it carries neither names nor addresses",
      ),
    );
    return;
  }
  await send(
    encodeFrame(
      "addresses" in frame
        ? { type: FrameType.SYMBOLS, id: frame.id, at: await lookupNames(frame.addresses) }
        : {
          type: FrameType.SYMBOLS,
          id: frame.id,
          symbols: await lookupSymbols((frame as { names: string[] }).names),
        },
    ),
  );
  await send(endFrame(frame.id, { ...EMPTY_END_STATS, objects: asked }));
}
