/**
 * Invariant check kept in production code: a broken invariant is a bug, stop loudly.
 * On hot paths write `if (!cond) assert(false, `...`)`: a template message
 * passed directly is built on every call (number-to-string conversions showed
 * up in the data plane's profile), not only when the check fails.
 */
export function assert(condition: unknown, message = 'assertion failed'): asserts condition {
  if (!condition) throw new Error(`invariant: ${message}`);
}
