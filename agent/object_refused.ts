/**
 * The error of a BPF object the agent will not load: refused by the check (`bpf_check.ts`),
 * malformed (`_elf.ts`), or not a walker (`walker.ts`). It stands apart because the check and the
 * ELF reader it uses both throw it.
 *
 * @module
 */

/** The object cannot be loaded: `message` names the section, program, helper or field. */
export class ObjectRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ObjectRefused";
  }
}
