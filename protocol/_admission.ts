/**
 * Admission of peers not yet authenticated: the rooms of {@linkcode listenChannel} for silent
 * connections and for TLS handshakes in progress, and which connection a newcomer evicts when a
 * room is full.
 *
 * @module
 */

/** How far a pending connection has come; the least advanced is evicted first. */
export const Progress = {
  /** Connected, sent nothing yet. */
  SILENT: 0,
  /** Sent a TLS record header; the rest of that first record has not come yet. */
  STARTED: 1,
  /** Sent its whole first record (a ClientHello): the TLS handshake runs. */
  GREETED: 2,
} as const;
export type Progress = typeof Progress[keyof typeof Progress];
const PROGRESS_NAMES: Record<Progress, string> = {
  [Progress.SILENT]: "silent",
  [Progress.STARTED]: "within its first record",
  [Progress.GREETED]: "in the TLS handshake",
};

/**
 * The connections not yet authenticated: those that sent nothing yet, and those that started a
 * TLS handshake. A real client sends its ClientHello at once, so it leaves the first set within
 * a round trip, while a flood of idle connections only ever competes with itself there.
 */
export interface Admission {
  silent: PendingHandshakes;
  handshakes: PendingHandshakes;
}

/** A connection still in admission or in its TLS handshake, and how to drop it. */
export interface Pending {
  address: string;
  progress: Progress;
  refuse: (reason: string) => void;
}

/**
 * One room of connections not yet authenticated, by source address, oldest first. Admission never
 * turns a newcomer away: when its address or the whole room is full, it evicts the least
 * advanced connection, the oldest among equals, of its own address or, at the total cap, of the
 * whole room, preferring the address that holds the most.
 */
export class PendingHandshakes {
  #byAddress = new Map<string, Set<Pending>>();
  #size = 0;
  #max: number;
  #maxPerAddress: number;
  #what: string;

  /** `what` names the entries in a reason: "N handshakes were pending". */
  constructor(max: number, maxPerAddress: number, what: string) {
    this.#max = Math.max(1, max);
    this.#maxPerAddress = Math.max(1, maxPerAddress);
    this.#what = what;
  }

  /** Adds `entry`, first evicting the connection that has to make room for it. */
  admit(entry: Pending): void {
    const own = this.#byAddress.get(entry.address);
    if (own && own.size >= this.#maxPerAddress) {
      this.#evict(
        [own],
        `evicted: ${own.size} ${this.#what} from "${entry.address}" (the cap per address)`,
      );
    } else if (this.#size >= this.#max) {
      this.#evict(
        [...this.#byAddress.values()],
        `evicted: ${this.#size} ${this.#what} (the total cap)`,
      );
    }
    let set = this.#byAddress.get(entry.address);
    if (!set) this.#byAddress.set(entry.address, set = new Set());
    set.add(entry);
    this.#size++;
  }

  /** Forgets `entry`; nothing happens if it is not pending. */
  remove(entry: Pending): void {
    const set = this.#byAddress.get(entry.address);
    if (!set?.delete(entry)) return;
    this.#size--;
    if (set.size === 0) this.#byAddress.delete(entry.address);
  }

  /** Evicts the connection that a newcomer at the total cap would; false if the room is empty. */
  evictOne(reason: string): boolean {
    if (this.#size === 0) return false;
    this.#evict([...this.#byAddress.values()], reason);
    return true;
  }

  /** Drops every pending connection with `reason`. */
  refuseAll(reason: string): void {
    for (const set of [...this.#byAddress.values()]) {
      for (const entry of [...set]) entry.refuse(reason);
    }
  }

  /** Evicts the least advanced connection of `sets`, from the fullest set, oldest first. */
  #evict(sets: Set<Pending>[], reason: string): void {
    let victim: Pending | undefined;
    let victimSet: Set<Pending> | undefined;
    for (const set of sets) {
      for (const entry of set) {
        const better = !victim || entry.progress < victim.progress ||
          (entry.progress === victim.progress && set.size > victimSet!.size);
        if (better) [victim, victimSet] = [entry, set];
        if (entry.progress === Progress.SILENT) break;
      }
    }
    victim!.refuse(`${reason}; it was ${PROGRESS_NAMES[victim!.progress]}`);
    this.remove(victim!);
  }
}
