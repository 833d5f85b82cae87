/**
 * A reference interpreter of walk plans, for tests: {@linkcode checkPlan} walks a plan over a
 * memory image as the in-guest walker does and proves that the plan covers every byte a view
 * reads.
 *
 * @module
 */

export {
  checkPlan,
  interpretPlan,
  type InterpretResult,
  type PlanMemory,
  type PlanRecord,
} from "./plan_interpreter.ts";
