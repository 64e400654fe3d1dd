/**
 * For promise chains that only put work in order: the next step must wait
 * for the previous one to settle, whether it worked or not.
 */

/**
 * Resolves (with nothing) once `p` settles, fulfilled or rejected. Only for
 * ordering: a failure of `p` reaches its caller through `p` itself, which
 * that caller holds and awaits; the chain that waits here must not fail
 * with it a second time.
 */
export function settledOf(p: Promise<unknown>): Promise<void> {
  return p.then(
    () => undefined,
    () => undefined,
  );
}
