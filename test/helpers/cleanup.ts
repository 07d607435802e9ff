/**
 * A teardown step's catch: the failure is written to stderr and the teardown goes on, so a
 * leaked stream or database shows in the output instead of being swallowed. "Not found" is no
 * failure: a test may have removed the thing itself (an app deletion, a legacy stream dropped).
 */
export function reportCleanupFailure(what: string): (err: unknown) => void {
  return (err) => {
    const message = err instanceof Error ? err.message : String(err);
    if (/not found/i.test(message)) return;
    process.stderr.write(`test cleanup: ${what} failed: ${message}\n`);
  };
}
