import type { SummaryRow } from './results.js';

/** The `target` and `met` of a summary row, computed from the measured value. */
export type Goal = Required<Pick<SummaryRow, 'target' | 'met'>>;

const show = (n: number): string => n.toLocaleString('en-US');

/**
 * Goal `value >= goal` (`>= 70%`). A value that was not measured (NaN) has not met it.
 */
export function atLeast(value: number, goal: number, unit = ''): Goal {
  return { target: `>= ${show(goal)}${unit}`, met: value >= goal ? 'yes' : 'no' };
}

/**
 * Goal `value <= goal` (`<= 30 s`). A value that was not measured (NaN, or Infinity for "did
 * not happen within the wait") has not met it.
 */
export function atMost(value: number, goal: number, unit = ''): Goal {
  return { target: `<= ${show(goal)}${unit}`, met: value <= goal ? 'yes' : 'no' };
}

/** Goal `value < goal` (`< 150 B`). A value that was not measured (NaN) has not met it. */
export function below(value: number, goal: number, unit = ''): Goal {
  return { target: `< ${show(goal)}${unit}`, met: value < goal ? 'yes' : 'no' };
}
