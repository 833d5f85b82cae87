/**
 * The protocol between the IDS and the agent: binary frames and walk plans, carried over an
 * encrypted, mutually authenticated TLS 1.3 channel with pinned pairing credentials, and what
 * both command lines share.
 *
 * ```ts
 * import { connectChannel, encodeFrame, ensureIdsCredentials, FrameType } from "./mod.ts";
 *
 * const credentials = await ensureIdsCredentials(".ebpfmon");
 * using channel = await connectChannel({ hostname: "127.0.0.1", port: 7047, credentials });
 * await channel.write(encodeFrame({ type: FrameType.HELLO, id: 1, version: 3 }));
 * ```
 *
 * Everything read from a peer is hostile: frame and plan decoders check every length and throw
 * {@linkcode FrameError} or {@linkcode PlanError}; a channel that cannot be opened or used throws
 * {@linkcode ChannelError}. The listening side bounds what an unauthenticated peer can hold
 * ({@linkcode ListenChannelOptions}).
 *
 * @module
 */

export {
  type AgentInfo,
  EMPTY_END_STATS,
  type EndStats,
  ErrorCode,
  FEATURE_LA57,
  type Frame,
  FRAME_HEADER,
  FrameError,
  FrameType,
  frameTypeName,
  type HoldAnswer,
  HoldState,
  KERNEL_HALF,
  KERNEL_HALF_LA57,
  kernelHalfOf,
  LIMITS,
  type LoadAnswer,
  type LoadedProgram,
  PrefetchTarget,
  PROTOCOL_VERSION,
  type RawFrame,
  StopReason,
} from "./frames.ts";
export { FrameDecoder, type FrameDecoderOptions } from "./frame_decoder.ts";
export { parseFrame } from "./frame_parser.ts";
export { sha256Hex } from "./digest.ts";
export { freePort } from "./ports.ts";
export { encodeFrame } from "./frame_encoder.ts";
export {
  CARRIED_RUN,
  DataFrameBuilder,
  type DataRecord,
  dataRecords,
  forEachRecord,
  RECORD_HEADER,
} from "./data_records.ts";
export * from "./plan.ts";
export { FEATURE_PACKED_PLANS, packPlan, unpackPlan } from "./plan_packing.ts";
export { type Channel, ChannelError, type ChannelErrorCode } from "./channel.ts";
export { connectChannel, type ConnectChannelOptions } from "./connect_channel.ts";
export { type ChannelServer, listenChannel, type ListenChannelOptions } from "./listen_channel.ts";
export {
  type AgentCredentials,
  ensureAgentCredentials,
  type EnsureAgentCredentialsOptions,
  ensureIdsCredentials,
  type EnsureIdsCredentialsOptions,
  type IdsCredentialFiles,
  type IdsCredentials,
  loadIdsCredentials,
} from "./credentials.ts";
export {
  certificateGuestName,
  enrollGuest,
  type EnrollGuestOptions,
  type Enrollment,
  GUEST_FILES,
  GUEST_NAME,
  GUEST_URI_PREFIX,
  guestCertificatePath,
} from "./enroll.ts";
export { fingerprint, parsePin } from "./fingerprint.ts";
export { concatBytes } from "./bytes.ts";
export { checkPrivateDirectory, checkPrivateFile, exists } from "./_files.ts";
export {
  DEFAULT_AGENT_ADDRESS,
  DEFAULT_STATE,
  type HostPort,
  parseHostPort,
  type Program,
  runProgram,
} from "./cli.ts";
