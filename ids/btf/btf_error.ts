/**
 * The error the BTF parser and reader throw for BTF they cannot use.
 *
 * @module
 */

/**
 * BTF that is malformed, hostile or lacks what was asked of it. The message names the failed
 * action and where: `Cannot parse BTF: type 1234 (STRUCT) extends past the type section`.
 */
export class BtfError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BtfError";
  }
}
