/** Invariant check kept in production code: a broken invariant is a bug, stop loudly. */
export function assert(condition: unknown, message = 'assertion failed'): asserts condition {
  if (!condition) throw new Error(`invariant: ${message}`);
}
