/**
 * ERROR and END, the frames that close an answer, each encoded in one call: the server, its
 * answers of memory and of files, and the objects' LOAD end theirs with them.
 *
 * @module
 */

import { encodeFrame, type EndStats, FrameType } from "../protocol/mod.ts";

/** An ERROR frame answering request `id`. */
export function errorFrame(id: number, code: number, message: string): Uint8Array {
  return encodeFrame({ type: FrameType.ERROR, id, code, message });
}

/** The END frame of request `id`'s answer. */
export function endFrame(id: number, stats: EndStats): Uint8Array {
  return encodeFrame({ type: FrameType.END, id, stats });
}
